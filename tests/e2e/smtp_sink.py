"""A real SMTP server for slipway's tests, built on aiosmtpd.

Writes every accepted message to DIR as <n>.eml (the raw message, as received) and
appends `<unix time> <Message-ID>` to DIR/accepted.log the moment it accepts it.
With --tempfail N it answers the first N messages with a temporary error (451), as a
busy or recovering server would. Prints `listening PORT` once it accepts connections.
"""

import argparse
import asyncio
import email
import os
import sys
import time

from aiosmtpd.smtp import SMTP


class Sink:
    def __init__(self, directory, tempfail):
        self.directory = directory
        self.tempfail = tempfail
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        if self.tempfail > 0:
            self.tempfail -= 1
            return "451 4.3.0 Try again later"
        self.count += 1
        raw = envelope.original_content or envelope.content
        # Long headers arrive folded; keep the id on one line.
        message_id = " ".join(str(email.message_from_bytes(raw).get("Message-ID", "-")).split())
        path = os.path.join(self.directory, f"{time.time_ns()}-{self.count}.eml")
        with open(path + ".tmp", "wb") as f:
            f.write(raw)
        os.rename(path + ".tmp", path)
        with open(os.path.join(self.directory, "accepted.log"), "a") as log:
            log.write(f"{time.time():.6f} {message_id}\n")
        return "250 2.0.0 OK"


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--tempfail", type=int, default=0)
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    handler = Sink(args.dir, args.tempfail)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="sink.test", decode_data=False),
        "127.0.0.1",
        args.port,
    )
    port = server.sockets[0].getsockname()[1]
    print(f"listening {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
