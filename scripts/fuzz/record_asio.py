"""Record real AI-server traffic as fuzz seeds: the real PySDK client talks to the real PySDK
server (`degirum server start`) through an asio proxy that writes every packet it relays.

Usage: record_asio.py ZOO_DIR IMAGES_DIR OUT_DIR PORT
The proxy runs in its own process (`record_asio.py --proxy OUT_DIR PORT`): PySDK's client holds
the GIL while it waits for some replies (system info), so proxy threads in the client's
process would never relay them. Writes OUT_DIR/asio_packet/* (a control byte then the framed packets of one connection
direction) and OUT_DIR/msgpack_results/* (each server result packet's payload)."""
import hashlib
import os
import socket
import struct
import subprocess
import sys
import threading
import time

if sys.argv[1] == "--proxy":
    zoo, images, out, port = None, None, sys.argv[2], int(sys.argv[3])
else:
    zoo, images, out, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
proxy_port = port + 2
for d in ("asio_packet", "msgpack_results"):
    os.makedirs(os.path.join(out, d), exist_ok=True)


def save(kind, data):
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(out, kind, name), "wb") as f:
        f.write(data)


def relay(src, dst, from_server):
    """Copy packets src -> dst, recording them; returns at EOF."""
    stream = bytearray()
    try:
        while True:
            hdr = src.recv(4, socket.MSG_WAITALL)
            if len(hdr) < 4:
                break
            (n,) = struct.unpack(">I", hdr)
            body = bytearray()
            while len(body) < n:
                chunk = src.recv(min(1 << 20, n - len(body)))
                if not chunk:
                    break
                body += chunk
            dst.sendall(hdr + body)
            stream += hdr + body
            if from_server and body[:1] != b"{":
                save("msgpack_results", bytes(body))
    except OSError:
        pass
    finally:
        # Close both ends at once: PySDK's server serves its connections one at a time, and a
        # half-closed relay would hold the next connection in its backlog past the client's
        # reply timeout.
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
    if stream:
        # Control byte 0: the JSON limit, whole reads; 1: the frame limit (results, frames).
        save("asio_packet", bytes([1 if len(stream) > 1 << 20 or from_server else 0]) + bytes(stream[: 1 << 20]))


def proxy():
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", proxy_port))
    ls.listen(16)
    while True:
        c, _ = ls.accept()
        try:
            s = socket.create_connection(("127.0.0.1", port))
        except OSError:  # the server is still starting: the client retries
            c.close()
            continue
        threading.Thread(target=relay, args=(c, s, False), daemon=True).start()
        threading.Thread(target=relay, args=(s, c, True), daemon=True).start()


if zoo is None:
    proxy()
    sys.exit(0)

proxy_proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--proxy", out, str(port)])
server = subprocess.Popen(
    [os.path.join(os.path.dirname(sys.executable), "degirum"), "server", "start", "--zoo", zoo, "--port", str(port), "--protocol", "asio"],
    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
)
try:
    import degirum as dg

    # Warm the server up directly first (its first system info loads every runtime, which can
    # outlast the client's reply timeout on a busy machine), then talk through the proxy.
    deadline = time.time() + 120
    while True:
        try:
            dg.connect(f"127.0.0.1:{port}").system_info()
            z = dg.connect(f"127.0.0.1:{proxy_port}")
            break
        except Exception:
            if time.time() > deadline:
                raise
            time.sleep(0.5)
    names = z.list_models()
    for name in names:
        m = z.load_model(name)
        _ = m.model_info
        for img in sorted(os.listdir(images)):
            try:
                m(os.path.join(images, img))
            except Exception as e:  # a model/image mismatch is still a recorded exchange
                print(f"{name} {img}: {e}", file=sys.stderr)
        # A stream-open failure, a per-frame error and batch pipelining.
        try:
            for _ in m.predict_batch([os.path.join(images, i) for i in sorted(os.listdir(images))] + [b"not an image"]):
                pass
        except Exception as e:
            print(f"{name} batch: {e}", file=sys.stderr)
    try:
        z.load_model(names[0], input_shape=[[1, 2, 3, 4, 5]])(os.path.join(images, sorted(os.listdir(images))[0]))
    except Exception:
        pass
    z.system_info()
    time.sleep(1)
finally:
    proxy_proc.terminate()
    server.terminate()
    try:
        server.wait(10)
    except subprocess.TimeoutExpired:
        server.kill()
