# Seed 001, "Soal Nomer 2": a client that sends the user's input to the
# count server (port 12345 in the seed) and shows the number of characters
# the server answers. The message comes from standard input, as input() reads it.
import socket
import sys

def main(port):
    client_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client_socket.settimeout(10)
    client_socket.connect(('127.0.0.1', port))
    try:
        message = input('Masukkan pesan: ')
        client_socket.sendall(message.encode())
        response = client_socket.recv(1024)
        print(f'Jumlah karakter: {response.decode()}')
    finally:
        client_socket.close()

if __name__ == '__main__':
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 12345)
