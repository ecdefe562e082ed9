/// The demo page served at `/` with `--demo-page`: the seed's traffic pattern in a browser — a
/// WebSocket request to `/tts-ws/tts`, then an HTTPS fetch of the result through the same prefix,
/// verified by sha256 and played in an `<audio>` element. Element ids are stable for tests.
enum DemoPage {
    static let html = """
        <!DOCTYPE html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>Ferry — TTS demo</title>
        <style>
          body { font: 16px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
          h1 { font-size: 1.4rem; } textarea { width: 100%; height: 5rem; font: inherit; }
          #status li { margin: .2rem 0; } .ok { color: #176b2c; } .err { color: #a11; }
          button { font: inherit; padding: .4rem 1.2rem; }
        </style>
        </head>
        <body>
        <h1>Ferry: WebSocket and HTTP through one prefix</h1>
        <p>The text goes to <code>/tts-ws/tts</code> over a WebSocket; the audio comes back over HTTPS from
        <code>/tts-ws/tts/wav/…</code>. One prefix, two protocols, never a mixed-up connection.</p>
        <textarea id="text">Hello from Ferry, the front door that keeps WebSockets and HTTP apart.</textarea>
        <p>
          <label><input type="radio" name="format" value="wav" checked> wav</label>
          <label><input type="radio" name="format" value="mp3"> mp3</label>
          <button id="speak">Speak</button>
        </p>
        <ol id="status"></ol>
        <p id="verified" data-verified="false"></p>
        <audio id="player" controls></audio>
        <script>
        const statusList = document.getElementById("status");
        function step(text, cls) {
          const li = document.createElement("li");
          li.textContent = text;
          if (cls) li.className = cls;
          statusList.appendChild(li);
        }
        function hex(buffer) {
          return Array.from(new Uint8Array(buffer)).map(b => b.toString(16).padStart(2, "0")).join("");
        }
        let socket = null;
        function connect() {
          return new Promise((resolve, reject) => {
            if (socket && socket.readyState === WebSocket.OPEN) return resolve(socket);
            const scheme = location.protocol === "https:" ? "wss://" : "ws://";
            socket = new WebSocket(scheme + location.host + "/tts-ws/tts");
            socket.onopen = () => { step("connected to " + scheme + location.host + "/tts-ws/tts", "ok"); resolve(socket); };
            socket.onerror = () => { step("WebSocket error", "err"); reject(new Error("websocket")); };
            socket.onclose = (e) => step("WebSocket closed (" + e.code + ")");
          });
        }
        document.getElementById("speak").addEventListener("click", async () => {
          const verified = document.getElementById("verified");
          verified.dataset.verified = "false";
          verified.textContent = "";
          try {
            const ws = await connect();
            const id = "req-" + Date.now();
            const format = document.querySelector("input[name=format]:checked").value;
            const reply = await new Promise((resolve) => {
              ws.onmessage = (event) => {
                const message = JSON.parse(event.data);
                if (message.id === id) resolve(message);
              };
              ws.send(JSON.stringify({ id, text: document.getElementById("text").value, format }));
              step("synthesizing (" + format + ")…");
            });
            if (reply.error) { step("error: " + reply.error, "err"); return; }
            step("synthesized by " + (reply.engine || "?") + ": " + reply.url + " (" + reply.bytes + " bytes, " + reply.duration_ms + " ms)");
            const response = await fetch("/tts-ws/" + reply.url);
            const body = await response.arrayBuffer();
            step("downloaded " + body.byteLength + " bytes over HTTP (status " + response.status + ")");
            const digest = hex(await crypto.subtle.digest("SHA-256", body));
            if (digest !== reply.sha256) { step("sha256 mismatch: " + digest, "err"); return; }
            step("sha256 verified: " + digest, "ok");
            verified.dataset.verified = "true";
            verified.textContent = "verified " + body.byteLength + " bytes";
            const player = document.getElementById("player");
            player.src = URL.createObjectURL(new Blob([body], { type: response.headers.get("Content-Type") || "audio/wav" }));
            player.play().catch(() => step("press play to listen"));
          } catch (error) {
            step("failed: " + error, "err");
          }
        });
        </script>
        </body>
        </html>
        """
}
