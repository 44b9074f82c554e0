# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_netlab_global_optspecs
    string join \n h/help V/version
end

function __fish_netlab_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_netlab_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_netlab_using_subcommand
    set -l cmd (__fish_netlab_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c netlab -n "__fish_netlab_needs_command" -s h -l help -d 'Print help'
complete -c netlab -n "__fish_netlab_needs_command" -s V -l version -d 'Print version'
complete -c netlab -n "__fish_netlab_needs_command" -f -a "echo" -d 'Send a message to an echo server and print what comes back'
complete -c netlab -n "__fish_netlab_needs_command" -f -a "count" -d 'Ask a count server how many characters a message has'
complete -c netlab -n "__fish_netlab_needs_command" -f -a "chat" -d 'Join a chat room: type lines to send them, see the room as it talks'
complete -c netlab -n "__fish_netlab_needs_command" -f -a "bench" -d 'Measure a server under load'
complete -c netlab -n "__fish_netlab_needs_command" -f -a "stats" -d 'Show a running netlabd\'s figures (its /metrics) as a table per server'
complete -c netlab -n "__fish_netlab_needs_command" -f -a "completions" -d 'Print netlab\'s shell completion script'
complete -c netlab -n "__fish_netlab_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c netlab -n "__fish_netlab_using_subcommand echo" -l timeout -d 'How long each step (connect, read, write; a UDP try) may take: 2s, 500ms' -r
complete -c netlab -n "__fish_netlab_using_subcommand echo" -l retries -d 'With --udp, how many times to resend before giving up' -r
complete -c netlab -n "__fish_netlab_using_subcommand echo" -l ca -d 'With --tls: the CA certificates (PEM) to trust, instead of the system\'s' -r -F
complete -c netlab -n "__fish_netlab_using_subcommand echo" -l cert -d 'With --tls: a client certificate (PEM), for servers with `client_ca`' -r -F
complete -c netlab -n "__fish_netlab_using_subcommand echo" -l key -d 'With --tls: the client certificate\'s private key (PEM)' -r -F
complete -c netlab -n "__fish_netlab_using_subcommand echo" -l servername -d 'With --tls: the name the server\'s certificate must carry (and SNI), when it is not the address\'s IP' -r
complete -c netlab -n "__fish_netlab_using_subcommand echo" -l udp -d 'Use UDP: one datagram, resent on timeout'
complete -c netlab -n "__fish_netlab_using_subcommand echo" -l tls -d 'Connect with TLS (the server\'s listener has `tls`)'
complete -c netlab -n "__fish_netlab_using_subcommand echo" -s h -l help -d 'Print help'
complete -c netlab -n "__fish_netlab_using_subcommand count" -l framing -d 'How the message and the reply are framed, as the server\'s `framing`: line (the reply is `N\\n`), header (a fixed-width ASCII length header both ways) or chunk (raw bytes, then half-close; the reply is the bare number)' -r -f -a "line\t''
header\t''
chunk\t''"
complete -c netlab -n "__fish_netlab_using_subcommand count" -l header-len -d 'Width of the length header, for --framing header' -r
complete -c netlab -n "__fish_netlab_using_subcommand count" -l timeout -d 'How long each step (connect, read, write) may take' -r
complete -c netlab -n "__fish_netlab_using_subcommand count" -l ca -d 'With --tls: the CA certificates (PEM) to trust, instead of the system\'s' -r -F
complete -c netlab -n "__fish_netlab_using_subcommand count" -l cert -d 'With --tls: a client certificate (PEM), for servers with `client_ca`' -r -F
complete -c netlab -n "__fish_netlab_using_subcommand count" -l key -d 'With --tls: the client certificate\'s private key (PEM)' -r -F
complete -c netlab -n "__fish_netlab_using_subcommand count" -l servername -d 'With --tls: the name the server\'s certificate must carry (and SNI), when it is not the address\'s IP' -r
complete -c netlab -n "__fish_netlab_using_subcommand count" -l tls -d 'Connect with TLS (the server\'s listener has `tls`)'
complete -c netlab -n "__fish_netlab_using_subcommand count" -s h -l help -d 'Print help'
complete -c netlab -n "__fish_netlab_using_subcommand chat" -s n -l name -d 'The name to join as: 1 to 32 characters, unique in the room' -r
complete -c netlab -n "__fish_netlab_using_subcommand chat" -l dialect -d 'The listener\'s dialect: line (a line per message), header (a fixed-width ASCII length header, seed 004\'s), bincode, or websocket (the client upgrades at /ws, as the listener\'s page at http://HOST:PORT/ does in a browser)' -r -f -a "line\t''
header\t''
bincode\t''
websocket\t''"
complete -c netlab -n "__fish_netlab_using_subcommand chat" -l header-len -d 'Width of the length header, for --dialect header (the seed uses 100)' -r
complete -c netlab -n "__fish_netlab_using_subcommand chat" -l timeout -d 'How long connecting, joining and each write may take' -r
complete -c netlab -n "__fish_netlab_using_subcommand chat" -l ca -d 'With --tls: the CA certificates (PEM) to trust, instead of the system\'s' -r -F
complete -c netlab -n "__fish_netlab_using_subcommand chat" -l cert -d 'With --tls: a client certificate (PEM), for servers with `client_ca`' -r -F
complete -c netlab -n "__fish_netlab_using_subcommand chat" -l key -d 'With --tls: the client certificate\'s private key (PEM)' -r -F
complete -c netlab -n "__fish_netlab_using_subcommand chat" -l servername -d 'With --tls: the name the server\'s certificate must carry (and SNI), when it is not the address\'s IP' -r
complete -c netlab -n "__fish_netlab_using_subcommand chat" -l tls -d 'Connect with TLS (the server\'s listener has `tls`)'
complete -c netlab -n "__fish_netlab_using_subcommand chat" -s h -l help -d 'Print help'
complete -c netlab -n "__fish_netlab_using_subcommand bench; and not __fish_seen_subcommand_from echo chat help" -s h -l help -d 'Print help'
complete -c netlab -n "__fish_netlab_using_subcommand bench; and not __fish_seen_subcommand_from echo chat help" -f -a "echo" -d 'Closed loop against an echo server: each connection sends SIZE bytes, waits for all of them back, records the round trip, and repeats'
complete -c netlab -n "__fish_netlab_using_subcommand bench; and not __fish_seen_subcommand_from echo chat help" -f -a "chat" -d 'A chat room: N clients join, M of them send messages, every client times what it receives'
complete -c netlab -n "__fish_netlab_using_subcommand bench; and not __fish_seen_subcommand_from echo chat help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c netlab -n "__fish_netlab_using_subcommand bench; and __fish_seen_subcommand_from echo" -s c -l connections -d 'Concurrent connections (with --udp: sockets)' -r
complete -c netlab -n "__fish_netlab_using_subcommand bench; and __fish_seen_subcommand_from echo" -s s -l size -d 'Bytes per request (and per reply)' -r
complete -c netlab -n "__fish_netlab_using_subcommand bench; and __fish_seen_subcommand_from echo" -s d -l duration -d 'How long to measure, after the warmup: seconds, or 10s, 500ms' -r
complete -c netlab -n "__fish_netlab_using_subcommand bench; and __fish_seen_subcommand_from echo" -l warmup -d 'How long to run before measuring (not counted in the report)' -r
complete -c netlab -n "__fish_netlab_using_subcommand bench; and __fish_seen_subcommand_from echo" -s t -l threads -d 'Generator threads, each with its own event loop; connections are spread over them' -r
complete -c netlab -n "__fish_netlab_using_subcommand bench; and __fish_seen_subcommand_from echo" -l loss-timeout -d 'With --udp, how long to wait for a reply before resending (the datagram is counted as lost)' -r
complete -c netlab -n "__fish_netlab_using_subcommand bench; and __fish_seen_subcommand_from echo" -l timeout -d 'How long to wait for each connection to be set up' -r
complete -c netlab -n "__fish_netlab_using_subcommand bench; and __fish_seen_subcommand_from echo" -l ca -d 'With --tls: the CA certificates (PEM) to trust, instead of the system\'s' -r -F
complete -c netlab -n "__fish_netlab_using_subcommand bench; and __fish_seen_subcommand_from echo" -l cert -d 'With --tls: a client certificate (PEM), for servers with `client_ca`' -r -F
complete -c netlab -n "__fish_netlab_using_subcommand bench; and __fish_seen_subcommand_from echo" -l key -d 'With --tls: the client certificate\'s private key (PEM)' -r -F
complete -c netlab -n "__fish_netlab_using_subcommand bench; and __fish_seen_subcommand_from echo" -l servername -d 'With --tls: the name the server\'s certificate must carry (and SNI), when it is not the address\'s IP' -r
complete -c netlab -n "__fish_netlab_using_subcommand bench; and __fish_seen_subcommand_from echo" -l udp -d 'Use UDP: each connection is its own socket'
complete -c netlab -n "__fish_netlab_using_subcommand bench; and __fish_seen_subcommand_from echo" -l json -d 'Print one JSON object on one line instead of the table'
complete -c netlab -n "__fish_netlab_using_subcommand bench; and __fish_seen_subcommand_from echo" -l tls -d 'Connect with TLS (the server\'s listener has `tls`)'
complete -c netlab -n "__fish_netlab_using_subcommand bench; and __fish_seen_subcommand_from echo" -l handshakes -d 'With --tls: every request on a new connection, with a full handshake (no resumption); reports handshakes/s'
complete -c netlab -n "__fish_netlab_using_subcommand bench; and __fish_seen_subcommand_from echo" -s h -l help -d 'Print help'
complete -c netlab -n "__fish_netlab_using_subcommand bench; and __fish_seen_subcommand_from chat" -s c -l clients -d 'Clients in the room, senders included' -r
complete -c netlab -n "__fish_netlab_using_subcommand bench; and __fish_seen_subcommand_from chat" -s m -l senders -d 'How many of the clients send' -r
complete -c netlab -n "__fish_netlab_using_subcommand bench; and __fish_seen_subcommand_from chat" -s s -l size -d 'Bytes of text per message (at least 29: the stamp)' -r
complete -c netlab -n "__fish_netlab_using_subcommand bench; and __fish_seen_subcommand_from chat" -s d -l duration -d 'How long to measure, after the warmup: seconds, or 10s, 500ms' -r
complete -c netlab -n "__fish_netlab_using_subcommand bench; and __fish_seen_subcommand_from chat" -l warmup -d 'How long to run before measuring (not counted in the report)' -r
complete -c netlab -n "__fish_netlab_using_subcommand bench; and __fish_seen_subcommand_from chat" -s w -l window -d 'Messages each sender may have in flight: sent, and not yet received by every other client' -r
complete -c netlab -n "__fish_netlab_using_subcommand bench; and __fish_seen_subcommand_from chat" -s b -l batch -d 'Most messages a sender writes at once (default: the window). Below the window, several batches are in flight, so the server relays one while the receivers read another' -r
complete -c netlab -n "__fish_netlab_using_subcommand bench; and __fish_seen_subcommand_from chat" -s t -l threads -d 'Generator threads, each with its own event loop; clients are dealt to them in turn' -r
complete -c netlab -n "__fish_netlab_using_subcommand bench; and __fish_seen_subcommand_from chat" -l dialect -d 'The listener\'s dialect, with --protocol netlab: line, header, bincode or websocket (clients upgrade at /ws and speak its JSON)' -r -f -a "line\t''
header\t''
bincode\t''
websocket\t''"
complete -c netlab -n "__fish_netlab_using_subcommand bench; and __fish_seen_subcommand_from chat" -l header-len -d 'Width of the length header, for --dialect header' -r
complete -c netlab -n "__fish_netlab_using_subcommand bench; and __fish_seen_subcommand_from chat" -l protocol -d 'How clients join and what the server\'s lines look like' -r -f -a "netlab\t'netlab\'s chat (or a server that speaks its line dialect): each client sends a name and waits for the welcome'
ncat\t'`ncat -l --chat`: no name; relayed lines carry a `<userN> ` prefix'"
complete -c netlab -n "__fish_netlab_using_subcommand bench; and __fish_seen_subcommand_from chat" -l timeout -d 'How long connecting and joining may take, per client' -r
complete -c netlab -n "__fish_netlab_using_subcommand bench; and __fish_seen_subcommand_from chat" -l json -d 'Print one JSON object on one line instead of the table'
complete -c netlab -n "__fish_netlab_using_subcommand bench; and __fish_seen_subcommand_from chat" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c netlab -n "__fish_netlab_using_subcommand bench; and __fish_seen_subcommand_from help" -f -a "echo" -d 'Closed loop against an echo server: each connection sends SIZE bytes, waits for all of them back, records the round trip, and repeats'
complete -c netlab -n "__fish_netlab_using_subcommand bench; and __fish_seen_subcommand_from help" -f -a "chat" -d 'A chat room: N clients join, M of them send messages, every client times what it receives'
complete -c netlab -n "__fish_netlab_using_subcommand bench; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c netlab -n "__fish_netlab_using_subcommand stats" -l watch -d 'Redraw every SECS seconds, as top does, with rates per second since the last look; Ctrl-C stops' -r
complete -c netlab -n "__fish_netlab_using_subcommand stats" -l timeout -d 'How long fetching the figures may take' -r
complete -c netlab -n "__fish_netlab_using_subcommand stats" -s h -l help -d 'Print help'
complete -c netlab -n "__fish_netlab_using_subcommand completions" -s h -l help -d 'Print help'
complete -c netlab -n "__fish_netlab_using_subcommand help; and not __fish_seen_subcommand_from echo count chat bench stats completions help" -f -a "echo" -d 'Send a message to an echo server and print what comes back'
complete -c netlab -n "__fish_netlab_using_subcommand help; and not __fish_seen_subcommand_from echo count chat bench stats completions help" -f -a "count" -d 'Ask a count server how many characters a message has'
complete -c netlab -n "__fish_netlab_using_subcommand help; and not __fish_seen_subcommand_from echo count chat bench stats completions help" -f -a "chat" -d 'Join a chat room: type lines to send them, see the room as it talks'
complete -c netlab -n "__fish_netlab_using_subcommand help; and not __fish_seen_subcommand_from echo count chat bench stats completions help" -f -a "bench" -d 'Measure a server under load'
complete -c netlab -n "__fish_netlab_using_subcommand help; and not __fish_seen_subcommand_from echo count chat bench stats completions help" -f -a "stats" -d 'Show a running netlabd\'s figures (its /metrics) as a table per server'
complete -c netlab -n "__fish_netlab_using_subcommand help; and not __fish_seen_subcommand_from echo count chat bench stats completions help" -f -a "completions" -d 'Print netlab\'s shell completion script'
complete -c netlab -n "__fish_netlab_using_subcommand help; and not __fish_seen_subcommand_from echo count chat bench stats completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c netlab -n "__fish_netlab_using_subcommand help; and __fish_seen_subcommand_from bench" -f -a "echo" -d 'Closed loop against an echo server: each connection sends SIZE bytes, waits for all of them back, records the round trip, and repeats'
complete -c netlab -n "__fish_netlab_using_subcommand help; and __fish_seen_subcommand_from bench" -f -a "chat" -d 'A chat room: N clients join, M of them send messages, every client times what it receives'
