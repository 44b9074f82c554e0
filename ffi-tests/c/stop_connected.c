/* Stopping a server while clients are connected: it returns within the
 * grace period (plus a little), under every model, and the clients see
 * their connection closed. */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int connect_to(uint16_t port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(connect(fd, (struct sockaddr *)&sin, sizeof sin) == 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static void stop_with(const char *model) {
    char config[256];
    snprintf(config, sizeof config,
             "name = \"e\"\nservice = \"echo\"\nmodel = \"%s\"\nlisten = [\"127.0.0.1:0\"]\n", model);
    netlab_server *server = start(config);
    if (!server) return;
    uint16_t port = 0;
    CHECK_OK(netlab_server_port(server, 0, &port));
    int fds[5];
    for (int i = 0; i < 5; i++) {
        fds[i] = connect_to(port);
        /* One round trip each, so every connection is being served. */
        CHECK(write(fds[i], "ping", 4) == 4);
        char buf[16];
        CHECK(read(fds[i], buf, sizeof buf) == 4);
    }
    netlab_server_stats stats;
    CHECK_OK(netlab_server_get_stats(server, &stats));
    CHECK(stats.open == 5);
    double t = now();
    CHECK_OK(netlab_server_stop(server, 300));
    double took = now() - t;
    CHECK(took < 3.0);
    if (took >= 3.0) fprintf(stderr, "model %s: stop took %.2f s\n", model, took);
    for (int i = 0; i < 5; i++) {
        char buf[16];
        ssize_t n = read(fds[i], buf, sizeof buf);
        CHECK(n <= 0); /* EOF or reset, not a timeout (that would be -1 after 5 s) */
        close(fds[i]);
    }
    CHECK(now() - t < 4.0);
    netlab_server_free(server);
}

static void stop_event_with_clients(void) { stop_with("event"); }
static void stop_thread_with_clients(void) { stop_with("thread"); }
static void stop_fork_with_clients(void) { stop_with("fork"); }

static void free_with_clients_connected(void) {
    netlab_server *server = start("name = \"e\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:0\"]\n");
    if (!server) return;
    uint16_t port = 0;
    CHECK_OK(netlab_server_port(server, 0, &port));
    int fd = connect_to(port);
    double t = now();
    netlab_server_free(server);
    CHECK(now() - t < 2.0);
    char buf[4];
    CHECK(read(fd, buf, sizeof buf) <= 0);
    close(fd);
}

int main(void) {
    RUN(stop_event_with_clients);
    RUN(stop_thread_with_clients);
    RUN(stop_fork_with_clients);
    RUN(free_with_clients_connected);
    FINISH();
}
