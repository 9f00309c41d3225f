# The lab's own time server, as the course sheet's final version (section 1.d) has it: the
# reference that bench/compare measures jam against.
#
# ProcessTheClient is section 1.d's code verbatim. Server and main() complete it from the
# template the sheet names (rm77/progjar, progjar3/threading_examples/server_thread.py), of
# which section 1.c shows the first lines. The only change: the port comes from the first
# argument (default 45000, as in the lab) instead of being written into bind(), and the address
# from the second, 127.0.0.1 unless given (the sheet's is 0.0.0.0): a benchmark has no business
# on any other interface, while mesin1 in the namespace lab serves the lab network.
from socket import *
import socket
import threading
import logging
import time
import sys
from datetime import datetime
class ProcessTheClient(threading.Thread):
    def __init__(self,connection,address):
        self.connection = connection
        self.address = address
        threading.Thread.__init__(self)

    def run(self):
        while True:
            data = self.connection.recv(32)
            balas=data.decode()
            quit_check = 0
            if data:
                print(data)
                req_data = data.decode()
                if (req_data.startswith("TIME") and req_data.endswith("\r\n")):
                    now = datetime.now()
                    jam = now.strftime("%d %m %y %H:%M:%S\r\n")
                    print(jam)
                    balas= now.strftime("JAM %d %m %y %H:%M:%S\r\n")
                    self.connection.sendall(balas.encode())
                elif(req_data.startswith("QUIT") and req_data.endswith("\r\n")):
                    quit_check = 1
                    self.connection.close()
                    break
                else:
                    self.connection.sendall(balas.encode())
            else:
                break
        self.connection.close()

class Server(threading.Thread):
    def __init__(self):
        self.the_clients = []
        self.my_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        threading.Thread.__init__(self)

    def run(self):
        self.my_socket.bind((HOST,PORT))
        self.my_socket.listen(1)
        while True:
            self.connection, self.client_address = self.my_socket.accept()
            logging.warning(f"connection from {self.client_address}")

            clt = ProcessTheClient(self.connection, self.client_address)
            clt.start()
            self.the_clients.append(clt)

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 45000
HOST = sys.argv[2] if len(sys.argv) > 2 else '127.0.0.1'

def main():
    svr = Server()
    svr.start()

if __name__=="__main__":
    main()
