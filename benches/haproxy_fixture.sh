# Shared by benches/load.sh and callgrind.sh; sourced, not run.
#
# haproxy_fixture FILE STABLE_PORT CANARY_PORT H1_PORT [H2_PORT] writes
# HAProxy doing cutover's job to FILE: one thread, the 90/10 split by
# rand(100) (as cutover's weighted pick without a sticky key),
# X-Forwarded-*, a request id, upstream connections reused. H1_PORT serves
# HTTP/1.1 (none when empty), H2_PORT h2c with prior knowledge.
haproxy_fixture() {
    local binds=""
    if [[ -n $4 ]]; then binds="    bind 127.0.0.1:$4"; fi
    if [[ -n ${5:-} ]]; then binds="${binds:+$binds
}    bind 127.0.0.1:$5 proto h2"; fi
    cat >"$1" <<EOF
# HAProxy doing cutover's job, one thread.
global
    nbthread 1
    maxconn 4096
    log stderr format raw local0 err
defaults
    mode http
    timeout connect 5s
    timeout client 120s
    timeout server 120s
    timeout http-keep-alive 120s
    option http-keep-alive
    http-reuse always
frontend proxy
$binds
    option forwardfor
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request set-header X-Request-Id %[uuid]
    use_backend canary if { rand(100) lt 10 }
    default_backend stable
backend stable
    server stable 127.0.0.1:$2
backend canary
    server canary 127.0.0.1:$3
EOF
}
