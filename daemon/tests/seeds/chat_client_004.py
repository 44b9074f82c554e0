# Seed 004's chat client, OCR typos mended (HEADER LENGTH -> HEADER_LENGTH,
# "client socket" -> client_socket, ...), host and port set to netlabd's
# header listener, HEADER_LENGTH to its header_len. The seed's listing stops
# after the send; the receive loop is the one its tutorial's client has.
import socket, select, errno, sys, time
HEADER_LENGTH = 10
TCP_IP = "127.0.0.1"
TCP_PORT = 1234
my_username = input("Masukkan nama anda: ")
client_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
client_socket.connect((TCP_IP, TCP_PORT))
client_socket.setblocking(False)
username = my_username.encode('utf-8')
username_header = f"{len(username):<{HEADER_LENGTH}}".encode('utf-8')
client_socket.send(username_header + username)
def receive_all(deadline):
    while time.time() < deadline:
        try:
            while True:
                username_header = client_socket.recv(HEADER_LENGTH)
                if not len(username_header):
                    print('Connection closed by the server'); sys.exit()
                username_length = int(username_header.decode('utf-8').strip())
                username = client_socket.recv(username_length).decode('utf-8')
                message_header = client_socket.recv(HEADER_LENGTH)
                message_length = int(message_header.decode('utf-8').strip())
                message = client_socket.recv(message_length).decode('utf-8')
                print(f'{username} > {message}')
        except IOError as e:
            if e.errno != errno.EAGAIN and e.errno != errno.EWOULDBLOCK:
                print('Reading error: {}'.format(str(e))); sys.exit()
            time.sleep(0.05)
for line in sys.stdin:
    message = line.rstrip('\n')
    if message:
        message = message.encode('utf-8')
        message_header = f"{len(message):<{HEADER_LENGTH}}".encode('utf-8')
        client_socket.send(message_header + message)
    receive_all(time.time() + 0.4)
receive_all(time.time() + 0.8)
