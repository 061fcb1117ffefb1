# mcp-multiplayer as an OCI image: the static x86_64 binaries, the bots and
# harness, and Debian's Python for the bots. Build the binaries first, then
# the image (docs/install.md, "OCI image"):
#
#   cargo build --release --locked --target x86_64-unknown-linux-musl
#   docker build -t mcp-multiplayer .
#
# The daemon runs as an unprivileged user and confines every bot hook with
# user, mount, pid, ipc, uts and net namespaces, Landlock and seccomp of its
# own. Container runtimes' default seccomp profiles refuse some of that, so
# run it with the profile in packaging/oci/seccomp.json (the runtime default
# plus exactly what the sandbox-runner needs); never with --privileged:
#
#   docker run -d --name mcp-multiplayer -p 127.0.0.1:8201:8201 \
#     --security-opt seccomp=packaging/oci/seccomp.json \
#     --security-opt apparmor=unconfined --security-opt no-new-privileges \
#     --cap-drop ALL --read-only --tmpfs /tmp \
#     -v mcp-multiplayer:/var/lib/mcp-multiplayer \
#     -v /etc/mcp-multiplayer/passphrase:/run/secrets/mcp-multiplayer-passphrase:ro \
#     -e MCP_MULTIPLAYER_PUBLIC_URL=https://mcp.example.com \
#     mcp-multiplayer
ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim
FROM ${BASE_IMAGE}
ARG BINARIES=target/x86_64-unknown-linux-musl/release

# python3-requests: for bots created with allow_network.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-requests ca-certificates \
    && rm -rf /var/lib/apt/lists/*

COPY ${BINARIES}/mcp-multiplayer ${BINARIES}/sandbox-runner /usr/bin/
COPY bots/*.py /usr/share/mcp-multiplayer/bots/
COPY bots/harness/*.py /usr/share/mcp-multiplayer/bots/harness/

# Hash-checked bytecode for the harness (the image is read-only at run time;
# every hook starts a fresh interpreter on it), and the service account, with
# a fixed uid (10001) so that volumes and secrets can be given to it.
RUN python3 -I -m compileall -q --invalidation-mode checked-hash /usr/share/mcp-multiplayer/bots/harness \
    && groupadd --system --gid 10001 mcp-multiplayer \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/mcp-multiplayer --no-create-home \
        --shell /usr/sbin/nologin mcp-multiplayer \
    && install -d -o mcp-multiplayer -g mcp-multiplayer -m 0700 /var/lib/mcp-multiplayer

# Listening on every address of the container is what publishing a port
# needs; off loopback the daemon requires passphrase approval, read from the
# secret below (it refuses to start without it). Set the public URL your
# reverse proxy serves with MCP_MULTIPLAYER_PUBLIC_URL.
ENV MCP_MULTIPLAYER_LISTEN=0.0.0.0:8201 \
    MCP_MULTIPLAYER_STATE_DIR=/var/lib/mcp-multiplayer \
    MCP_MULTIPLAYER_PASSPHRASE_FILE=/run/secrets/mcp-multiplayer-passphrase
USER mcp-multiplayer
VOLUME /var/lib/mcp-multiplayer
EXPOSE 8201
HEALTHCHECK --interval=30s --timeout=5s \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8201/healthz', timeout=4)"]
ENTRYPOINT ["/usr/bin/mcp-multiplayer"]
CMD ["serve"]
