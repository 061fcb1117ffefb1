"""EchoBot: repeats each message back, tagged with its sender and seq.

A public message is echoed publicly; a message sent privately to the bot is
echoed privately to its sender. Useful to check that a channel and its bot
work, and as the smallest example of the bot API.
"""

MANIFEST = {
    "name": "EchoBot",
    "version": "1.0.0",
    "summary": "Echoes every message it sees back to the channel (private messages privately).",
    "params": {"prefix": "text put before a string echo (default \"\")"},
}


class EchoBot:
    def __init__(self, ctx, params):
        # A fresh instance per hook: nothing kept here outlives the hook.
        self.ctx = ctx
        self.params = params if isinstance(params, dict) else {}

    def on_message(self, msg):
        params = self.params
        body = msg.get("body")
        prefix = params.get("prefix")
        if isinstance(prefix, str) and isinstance(body, str):
            body = prefix + body
        reply = {"from": msg.get("sender"), "seq": msg.get("seq"), "body": body}
        if msg.get("to"):
            self.ctx.post("echo", reply, to=[msg.get("sender")])
        else:
            self.ctx.post("echo", reply)
