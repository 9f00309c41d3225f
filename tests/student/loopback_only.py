"""A student server that answers, but only on the container's own loopback: bound to
127.0.0.1, so that mesin2 and mesin3 are refused."""
import socket
import time

s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 45000))
s.listen(64)
print("listening on 127.0.0.1:45000")
while True:
    c, _ = s.accept()
    c.recv(1024)
    c.sendall(("JAM " + time.strftime("%H:%M:%S") + "\r\n").encode())
    c.close()
