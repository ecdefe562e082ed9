import Foundation
import Testing

/// Bytes that arrive together with the WebSocket handshake. Removing the HTTP decoder hands them to
/// the tunnel from a task of its own, with no read-complete event after them, and nothing flushed
/// them: a server's greeting sent in the same segment as its 101, or a client's first frame sent
/// with its upgrade request, waited until the other side sent something, which it never did when
/// it was waiting for that very message. A client FIN read together with the upgrade request was
/// lost the same way: the tunnel stayed open, the client's socket in CLOSE_WAIT (found by fuzzing).
@Suite struct TunnelEarlyDataTests {
    struct Result: Decodable {
        var switched: Bool
        var frame: String?
        var closed: Bool?
        var seconds: Double
    }

    func run(_ mode: String, path: String) async throws -> Result? {
        guard PythonBackend.available else { return nil }
        let files = try FilesFixture()
        let backend = try PythonBackend(script: "misbehaving_backend.py", arguments: [files.directory.path])
        let proxy = try await ProxyHarness(backendPort: backend.port, routes: [route("/tts-ws")])
        let output = try shell(
            "/usr/bin/env",
            ["python3", fixtures.appendingPathComponent("early_frames_client.py").path, "\(proxy.port)", path, mode],
            timeout: 20)
        await proxy.stop()
        let line = output.output.split(separator: "\n").last.map(String.init) ?? ""
        return try JSONDecoder().decode(Result.self, from: Data(line.utf8))
    }

    @Test func aServerGreetingSentWithThe101ReachesTheClient() async throws {
        guard let result = try await run("server-greeting", path: "/tts-ws/tts-greet") else { return }
        #expect(result.switched)
        #expect(result.frame == "welcome", "\(result)")
    }

    @Test func aFirstFrameSentWithTheUpgradeRequestIsEchoed() async throws {
        guard let result = try await run("client-early", path: "/tts-ws/tts") else { return }
        #expect(result.switched)
        #expect(result.frame == "early", "\(result)")
    }

    /// A FIN that comes with the upgrade request (before the 101) ends the tunnel once it is set
    /// up. (A first frame sent between the request and such a FIN is still lost: NIO's decoder drops
    /// what follows an upgrade when it reads EOF; no RFC 6455 client sends frames before the 101.)
    @Test func aFINSentWithTheUpgradeRequestEndsTheTunnel() async throws {
        guard let result = try await run("client-fin", path: "/tts-ws/tts") else { return }
        #expect(result.switched)
        #expect(result.closed == true, "the tunnel stayed open after the client's FIN: \(result)")
    }

    /// A backend's last frame, sent just before it closes, reaches the client before the tunnel
    /// ends (the half-close waits for the writes queued before it).
    @Test func aFrameTheBackendSendsJustBeforeClosingReachesTheClient() async throws {
        guard let result = try await run("server-bye", path: "/tts-ws/tts-bye") else { return }
        #expect(result.switched)
        #expect(result.frame == "bye", "\(result)")
        #expect(result.closed == true, "\(result)")
    }
}
