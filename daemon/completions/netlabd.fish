complete -c netlabd -s c -l config -d 'The configuration file [default: /etc/netlab/netlabd.toml, else the embedded default]' -r -F
complete -c netlabd -l pidfile -d 'Write the daemon\'s pid to FILE, locked while it runs and removed when it stops; a second netlabd with the same pidfile refuses to start' -r -F
complete -c netlabd -l check -d 'Check the configuration and exit: 0 when valid, else every error with its file, line and column, and 2'
complete -c netlabd -l print-default-config -d 'Print the embedded default configuration and exit'
complete -c netlabd -l daemonize -d 'Run in the background: fork, detach, log to syslog unless the configuration says otherwise, and drop to the configured user'
complete -c netlabd -s h -l help -d 'Print help (see more with \'--help\')'
complete -c netlabd -s V -l version -d 'Print version'
