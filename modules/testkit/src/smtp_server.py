# A real SMTP server (aiosmtpd) on a free loopback port. Prints {"port": N} once listening, then one JSON
# line per received message and recipient. Exits when its stdin closes, so it never outlives its test.
import asyncio
import base64
import email
import json
import sys
import threading
from email import policy

from aiosmtpd.smtp import SMTP


class Recorder:
    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=policy.default)
        part = message.get_body(preferencelist=("plain",))
        body = part.get_content() if part is not None else ""
        html_part = message.get_body(preferencelist=("html",))
        html = html_part.get_content() if html_part is not None else None
        attachments = [{"filename": a.get_filename() or "", "content_type": a.get_content_type(),
                        "data": base64.b64encode(a.get_payload(decode=True) or b"").decode()}
                       for a in message.iter_attachments()]
        for rcpt in envelope.rcpt_tos:
            print(json.dumps({"to": rcpt, "from": envelope.mail_from,
                              "subject": str(message["subject"] or ""), "body": body, "html": html,
                              "message_id": str(message["message-id"] or ""),
                              "attachments": attachments}), flush=True)
        return "250 OK"


async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(Recorder()), "127.0.0.1", 0)
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
    stdin_closed = asyncio.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(stdin_closed.set)),
                     daemon=True).start()
    await stdin_closed.wait()


asyncio.run(main())
