/* Chat between two handles, in every dialect (websocket too) and across dialects: join
 * notices, messages, the roster, a taken name, a silent room, leaving; and
 * one handle sending from one thread while another thread receives. */
#include <threads.h>
#include <time.h>

#include "check.h"

static netlab_server *room;
#define DIALECTS 4
static char addrs[DIALECTS][64]; /* line, header, bincode, websocket */
static const int dialects[DIALECTS] = {NETLAB_DIALECT_LINE, NETLAB_DIALECT_HEADER, NETLAB_DIALECT_BINCODE,
                                       NETLAB_DIALECT_WEBSOCKET};

static netlab_chat *join(int which, const char *name) {
    netlab_chat *chat = NULL;
    CHECK_OK(netlab_chat_connect(addrs[which], dialects[which], 0, name, 2000, &chat));
    return chat;
}

/* Receives events until one of `kind` arrives (others are skipped). */
static bool recv_kind(netlab_chat *chat, int kind, netlab_chat_event *event) {
    for (int i = 0; i < 10; i++) {
        netlab_status status = netlab_chat_recv(chat, 2000, event);
        if (status != NETLAB_OK) {
            fprintf(stderr, "waiting for event kind %d: %s: %s\n", kind,
                    netlab_status_str((int)status), last_error());
            return false;
        }
        if (event->kind == kind) return true;
    }
    return false;
}

static void two_handles_talk_in_every_pair_of_dialects(void) {
    for (int a = 0; a < DIALECTS; a++) {
        for (int b = 0; b < DIALECTS; b++) {
            netlab_chat *ayu = join(a, "Ayu");
            netlab_chat *rafi = join(b, "Rafi");
            if (!ayu || !rafi) {
                netlab_chat_free(ayu);
                netlab_chat_free(rafi);
                continue;
            }
            netlab_chat_event ev;
            CHECK(recv_kind(ayu, NETLAB_CHAT_EVENT_JOINED, &ev));
            CHECK(ev.sender && strcmp(ev.sender, "Rafi") == 0);
            CHECK(ev.online == 2);
            CHECK_OK(netlab_chat_send(rafi, "halo semua"));
            CHECK(recv_kind(ayu, NETLAB_CHAT_EVENT_MESSAGE, &ev));
            CHECK(ev.sender && strcmp(ev.sender, "Rafi") == 0);
            CHECK(ev.text && strcmp(ev.text, "halo semua") == 0);
            CHECK_OK(netlab_chat_send(ayu, "h\xc3\xa9llo"));
            CHECK(recv_kind(rafi, NETLAB_CHAT_EVENT_MESSAGE, &ev));
            CHECK(ev.text && strcmp(ev.text, "h\xc3\xa9llo") == 0);
            netlab_chat_free(rafi);
            CHECK(recv_kind(ayu, NETLAB_CHAT_EVENT_LEFT, &ev));
            CHECK(ev.sender && strcmp(ev.sender, "Rafi") == 0);
            CHECK(ev.online == 1);
            netlab_chat_free(ayu);
        }
    }
}

static void the_roster_lists_everyone(void) {
    netlab_chat *ayu = join(0, "Ayu");
    netlab_chat *dian = join(2, "Dian");
    if (!ayu || !dian) goto out;
    CHECK_OK(netlab_chat_who(dian));
    netlab_chat_event ev;
    CHECK(recv_kind(dian, NETLAB_CHAT_EVENT_ROSTER, &ev));
    CHECK(ev.online == 2);
    CHECK(ev.text && strstr(ev.text, "Ayu") && strstr(ev.text, "Dian"));
out:
    netlab_chat_free(ayu);
    netlab_chat_free(dian);
}

static void a_taken_name_is_refused_with_the_reason(void) {
    netlab_chat *ayu = join(1, "Ayu");
    netlab_chat *again = (netlab_chat *)&failures; /* must stay untouched */
    netlab_chat *before = again;
    CHECK_STATUS(netlab_chat_connect(addrs[0], NETLAB_DIALECT_LINE, 0, "Ayu", 2000, &again),
                 NETLAB_ERR_PROTOCOL);
    CHECK(again == before);
    CHECK_MESSAGE("Ayu");
    CHECK_STATUS(netlab_chat_connect(addrs[0], NETLAB_DIALECT_LINE, 0, "", 2000, &again),
                 NETLAB_ERR_INVALID);
    netlab_chat_free(ayu);
}

static void a_silent_room_times_out_and_the_handle_still_works(void) {
    netlab_chat *ayu = join(0, "Ayu");
    netlab_chat *rafi = join(0, "Rafi");
    if (!ayu || !rafi) goto out;
    netlab_chat_event ev;
    CHECK(recv_kind(ayu, NETLAB_CHAT_EVENT_JOINED, &ev));
    ev.kind = 99;
    CHECK_STATUS(netlab_chat_recv(ayu, 100, &ev), NETLAB_ERR_TIMEOUT);
    CHECK(ev.kind == 99);
    CHECK_MESSAGE("no chat event");
    CHECK_OK(netlab_chat_send(rafi, "still here"));
    CHECK(recv_kind(ayu, NETLAB_CHAT_EVENT_MESSAGE, &ev));
out:
    netlab_chat_free(ayu);
    netlab_chat_free(rafi);
}

static void a_stopped_server_closes_the_handle(void) {
    netlab_server *s = start("name = \"c\"\nservice = \"chat\"\nlisten = [{ addr = \"127.0.0.1:0\", dialect = \"line\" }]\n");
    if (!s) return;
    char addr[64];
    address_of(s, 0, addr, sizeof addr);
    netlab_chat *chat = NULL;
    CHECK_OK(netlab_chat_connect(addr, NETLAB_DIALECT_LINE, 0, "Ayu", 2000, &chat));
    CHECK_OK(netlab_server_stop(s, 200));
    netlab_chat_event ev;
    netlab_status status = NETLAB_OK;
    for (int i = 0; i < 5 && status == NETLAB_OK; i++) status = netlab_chat_recv(chat, 2000, &ev);
    CHECK(status == NETLAB_ERR_CLOSED || status == NETLAB_ERR_IO);
    netlab_chat_free(chat);
    netlab_server_free(s);
}

/* Seed 004's client frames with a 100-byte header; a listener configured
 * with that width talks to a handle given it, and to the other dialects. */
static void the_seeds_100_byte_header_is_spoken(void) {
    netlab_server *s = start("name = \"seed\"\nservice = \"chat\"\n"
                             "listen = [{ addr = \"127.0.0.1:0\", dialect = \"header\", header_len = 100 },\n"
                             "          { addr = \"127.0.0.1:0\", dialect = \"line\" }]\n");
    if (!s) return;
    char wide[64], line[64];
    address_of(s, 0, wide, sizeof wide);
    address_of(s, 1, line, sizeof line);
    netlab_chat *dian = NULL, *ayu = NULL;
    CHECK_OK(netlab_chat_connect(wide, NETLAB_DIALECT_HEADER, 100, "Dian", 2000, &dian));
    CHECK_OK(netlab_chat_connect(line, NETLAB_DIALECT_LINE, 0, "Ayu", 2000, &ayu));
    if (!dian || !ayu) goto out;
    netlab_chat_event ev;
    CHECK(recv_kind(dian, NETLAB_CHAT_EVENT_JOINED, &ev));
    CHECK_OK(netlab_chat_send(dian, "Hello World"));
    CHECK(recv_kind(ayu, NETLAB_CHAT_EVENT_MESSAGE, &ev));
    CHECK(ev.sender && strcmp(ev.sender, "Dian") == 0);
    CHECK(ev.text && strcmp(ev.text, "Hello World") == 0);
    CHECK_OK(netlab_chat_send(ayu, "halo Dian"));
    CHECK(recv_kind(dian, NETLAB_CHAT_EVENT_MESSAGE, &ev));
    CHECK(ev.text && strcmp(ev.text, "halo Dian") == 0);
    /* Wider than any listener can be: refused before connecting. */
    netlab_chat *wider = NULL;
    CHECK_STATUS(netlab_chat_connect(wide, NETLAB_DIALECT_HEADER, 1025, "Rafi", 2000, &wider),
                 NETLAB_ERR_INVALID);
    CHECK_MESSAGE("header_len");
    CHECK(wider == NULL);
out:
    netlab_chat_free(dian);
    netlab_chat_free(ayu);
    netlab_server_free(s);
}

/* The usual client shape: a reader thread that waits in netlab_chat_recv,
 * and the main thread sending on the same handle. The main thread reads
 * the struct only after joining the reader. */
struct reader {
    netlab_chat *chat;
    int messages; /* how many "from Rafi N" messages arrived, in order */
    char failure[512];
};

/* Receives until five messages from Rafi came, or three waits in a row
 * (6 s) brought nothing. */
static int read_five_messages(void *arg) {
    struct reader *r = arg;
    int idle = 0;
    while (r->messages < 5) {
        netlab_chat_event ev;
        netlab_status status = netlab_chat_recv(r->chat, 2000, &ev);
        if (status == NETLAB_ERR_TIMEOUT && ++idle < 3) continue;
        if (status != NETLAB_OK) {
            char why[256];
            netlab_last_error(why, sizeof why);
            snprintf(r->failure, sizeof r->failure, "recv: %s: %s",
                     netlab_status_str((int)status), why);
            return 1;
        }
        idle = 0;
        if (ev.kind != NETLAB_CHAT_EVENT_MESSAGE) continue;
        char want[32];
        snprintf(want, sizeof want, "from Rafi %d", r->messages);
        if (!ev.sender || strcmp(ev.sender, "Rafi") != 0 || !ev.text || strcmp(ev.text, want) != 0) {
            snprintf(r->failure, sizeof r->failure, "got message \"%s\" from %s, want \"%s\"",
                     ev.text ? ev.text : "(null)", ev.sender ? ev.sender : "(null)", want);
            return 1;
        }
        r->messages++;
    }
    return 0;
}

static double seconds_now(void) {
    struct timespec t;
    timespec_get(&t, TIME_UTC);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void a_send_does_not_wait_for_a_recv_in_another_thread(void) {
    netlab_chat *ayu = join(0, "Ayu");
    netlab_chat *rafi = join(2, "Rafi");
    if (!ayu || !rafi) goto out;
    netlab_chat_event ev;
    CHECK(recv_kind(ayu, NETLAB_CHAT_EVENT_JOINED, &ev));
    struct reader r = {.chat = ayu, .messages = 0, .failure = ""};
    thrd_t reader;
    if (thrd_create(&reader, read_five_messages, &r) != thrd_success) {
        CHECK(!"thrd_create");
        goto out;
    }
    for (int i = 0; i < 5; i++) {
        /* Let the reader settle into its 2-second wait. */
        thrd_sleep(&(struct timespec){.tv_nsec = 50 * 1000 * 1000}, NULL);
        char text[32];
        snprintf(text, sizeof text, "from Ayu %d", i);
        double started = seconds_now();
        CHECK_OK(netlab_chat_send(ayu, text));
        double took = seconds_now() - started;
        if (took >= 0.5) fprintf(stderr, "send %d took %.3f s\n", i, took);
        CHECK(took < 0.5);
        if (i == 2) CHECK_OK(netlab_chat_who(ayu));
        CHECK(recv_kind(rafi, NETLAB_CHAT_EVENT_MESSAGE, &ev));
        CHECK(ev.text && strcmp(ev.text, text) == 0);
        snprintf(text, sizeof text, "from Rafi %d", i);
        CHECK_OK(netlab_chat_send(rafi, text));
    }
    int result = 1;
    CHECK(thrd_join(reader, &result) == thrd_success);
    if (r.failure[0]) fprintf(stderr, "reader thread: %s\n", r.failure);
    CHECK(result == 0);
    CHECK(r.messages == 5);
out:
    netlab_chat_free(ayu);
    netlab_chat_free(rafi);
}

static void null_arguments(void) {
    netlab_chat *chat = NULL;
    netlab_chat_event ev;
    CHECK_STATUS(netlab_chat_connect(NULL, 0, 0, "a", 100, &chat), NETLAB_ERR_NULL);
    CHECK_STATUS(netlab_chat_connect(addrs[0], 0, 0, NULL, 100, &chat), NETLAB_ERR_NULL);
    CHECK_STATUS(netlab_chat_connect(addrs[0], 0, 0, "a", 100, NULL), NETLAB_ERR_NULL);
    CHECK_STATUS(netlab_chat_connect(addrs[0], 9, 0, "a", 100, &chat), NETLAB_ERR_INVALID);
    CHECK_STATUS(netlab_chat_send(NULL, "x"), NETLAB_ERR_NULL);
    CHECK_STATUS(netlab_chat_who(NULL), NETLAB_ERR_NULL);
    CHECK_STATUS(netlab_chat_recv(NULL, 10, &ev), NETLAB_ERR_NULL);
    chat = join(0, "Ayu");
    if (chat) {
        CHECK_STATUS(netlab_chat_send(chat, NULL), NETLAB_ERR_NULL);
        CHECK_STATUS(netlab_chat_recv(chat, 10, NULL), NETLAB_ERR_NULL);
    }
    netlab_chat_free(chat);
    netlab_chat_free(NULL);
}

int main(void) {
    room = start("name = \"chat\"\nservice = \"chat\"\n"
                 "listen = [{ addr = \"127.0.0.1:0\", dialect = \"line\" },\n"
                 "          { addr = \"127.0.0.1:0\", dialect = \"header\" },\n"
                 "          { addr = \"127.0.0.1:0\", dialect = \"bincode\" },\n"
                 "          { addr = \"127.0.0.1:0\", dialect = \"websocket\" }]\n");
    if (!room) FINISH();
    for (int i = 0; i < DIALECTS; i++) address_of(room, (size_t)i, addrs[i], sizeof addrs[i]);
    RUN(two_handles_talk_in_every_pair_of_dialects);
    RUN(the_roster_lists_everyone);
    RUN(a_taken_name_is_refused_with_the_reason);
    RUN(a_silent_room_times_out_and_the_handle_still_works);
    RUN(a_stopped_server_closes_the_handle);
    RUN(the_seeds_100_byte_header_is_spoken);
    RUN(a_send_does_not_wait_for_a_recv_in_another_thread);
    RUN(null_arguments);
    netlab_server_free(room);
    FINISH();
}
