# NixOS VM test: boots the module's service, checks that it runs unprivileged
# and under the exposure threshold, plays a GuessBot game between two clients
# (the bot hooks run in the real sandbox under the unit's restrictions),
# restarts the service and finds the channel intact.
#
#   nix build .#checks.x86_64-linux.vm -L
{ self, pkgs }:
pkgs.testers.runNixOSTest {
  name = "mcp-multiplayer";

  # The flake's module adds its overlay to nixpkgs.overlays (the package
  # option defaults to pkgs.mcp-multiplayer), so the node needs its own pkgs.
  node.pkgsReadOnly = false;

  nodes.server =
    { ... }:
    {
      imports = [ self.nixosModules.default ];

      services.mcp-multiplayer = {
        enable = true;
        settings.public_url = "http://127.0.0.1:8201";
        passphraseFile = "/etc/mcp-multiplayer/passphrase";
      };
      # A copied (mode set), root-only file; a real deployment would use a
      # secret manager. Its text is in the store, which is fine for a test.
      environment.etc."mcp-multiplayer/passphrase" = {
        text = "vm-test passphrase";
        mode = "0400";
      };
      environment.systemPackages = [
        pkgs.python3
        pkgs.curl
      ];
      virtualisation.memorySize = 2048;
    };

  testScript = ''
    import json

    url = "http://127.0.0.1:8201"
    client = "python3 ${./client.py}"

    server.wait_for_unit("mcp-multiplayer.service")
    server.wait_for_open_port(8201)

    with subtest("service runs unprivileged and hardened"):
        pid = server.succeed("systemctl show -P MainPID mcp-multiplayer").strip()
        user = server.succeed(f"ps -o user= -p {pid}").strip()
        assert user == "mcp-multiplayer", f"service runs as {user!r}"
        server.succeed(f"grep -qE '^CapEff:\\s+0+$' /proc/{pid}/status")
        print(server.succeed("systemd-analyze security mcp-multiplayer.service"))
        server.succeed("systemd-analyze security --threshold=20 mcp-multiplayer.service")

    with subtest("health, metrics, and OAuth in front of /mcp"):
        server.succeed(f"curl -fsS {url}/healthz")
        server.succeed(f"curl -fsS {url}/metrics")
        server.succeed(f"curl -fsS {url}/.well-known/oauth-protected-resource")
        server.succeed(f"curl -fsS {url}/.well-known/oauth-authorization-server")
        code = server.succeed(f"curl -s -o /dev/null -w '%{{http_code}}' -X POST {url}/mcp").strip()
        assert code == "401", f"/mcp without a token answered {code}"

    with subtest("two clients play a GuessBot game"):
        mint = "runuser -u mcp-multiplayer -- mcp-multiplayer token create {} --state-dir /var/lib/mcp-multiplayer"
        alice = server.succeed(mint.format("alice")).strip()
        bob = server.succeed(mint.format("bob")).strip()
        game = json.loads(server.succeed(f"{client} play {url} {alice} {bob}"))
        print(game)

    with subtest("a restart keeps the channel"):
        server.succeed("systemctl restart mcp-multiplayer.service")
        server.wait_for_unit("mcp-multiplayer.service")
        server.wait_for_open_port(8201)
        count = json.dumps(game["count"])
        head = json.dumps(game["head"])
        server.succeed(f"{client} check {url} {alice} {game['channel_id']} '{count}' '{head}'")
  '';
}
