"""A correct student server, written as a student would from the sheet: one thread per client,
TIME answered with JAM hh:mm:ss in the local zone, QUIT ends the session, on 0.0.0.0:45000."""
import socket
import threading
import time


def serve(conn):
    with conn:
        buf = b""
        while True:
            data = conn.recv(1024)
            if not data:
                return
            buf += data
            while b"\r\n" in buf:
                line, buf = buf.split(b"\r\n", 1)
                if line.startswith(b"TIME"):
                    conn.sendall(("JAM " + time.strftime("%H:%M:%S") + "\r\n").encode())
                elif line.startswith(b"QUIT"):
                    return


s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 45000))
s.listen(64)
print("listening on 0.0.0.0:45000")
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
