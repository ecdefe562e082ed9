import FerryConfig
import FerryProxy
import Foundation
import Testing

/// The seed's failure, reproduced against Ferry: one `auto` route for the whole `/tts-ws` prefix in
/// front of one backend port that serves both WebSockets and files, with hundreds of WebSockets
/// open while files are fetched over keep-alive HTTP. Every body is checked by sha256.
///
/// `FERRY_HAZARD_LONG=1` runs the long version (30 s, 1,000 idle WebSockets) on demand.
@Suite(.serialized) struct HazardTests {
    struct Result: Decodable {
        var wrong_bodies: Int
        var unexpected_404: Int
        var http_ok: Int
        var ws_ok: Int
        var errors: Int
        var idle_open: Int
    }

    static var long: Bool { ProcessInfo.processInfo.environment["FERRY_HAZARD_LONG"] == "1" }

    func drive(proxyPort: Int, files: FilesFixture, misbehaving: Bool) throws -> Result {
        var arguments = [
            "python3", fixtures.appendingPathComponent("hazard_driver.py").path, String(proxyPort),
            files.directory.path,
            "--idle", Self.long ? "1000" : "200", "--clients", "8", "--seconds", Self.long ? "30" : "3",
        ]
        if misbehaving { arguments.append("--misbehaving") }
        let run = try shell("/usr/bin/env", arguments, timeout: Self.long ? 180 : 60)
        guard let line = run.output.split(separator: "\n").last,
            let result = try? JSONDecoder().decode(Result.self, from: Data(line.utf8))
        else {
            throw TestFailure("hazard driver printed no result: \(run.output)")
        }
        print("hazard result (misbehaving: \(misbehaving)): \(line)")
        return result
    }

    @Test func seedLayoutOnOneTornadoPortHasNoCrossTalk() async throws {
        guard PythonBackend.available else { return print("skipped: python3 with tornado/websockets is missing") }
        let files = try FilesFixture()
        let backend = try PythonBackend(script: "seed_tornado_app.py", arguments: [files.directory.path])
        let proxy = try await ProxyHarness(backendPort: backend.port, routes: [route("/tts-ws")])
        let result = try drive(proxyPort: proxy.port, files: files, misbehaving: false)
        #expect(result.idle_open == (Self.long ? 1000 : 200))
        #expect(result.wrong_bodies == 0)
        #expect(result.unexpected_404 == 0)
        #expect(result.errors == 0)
        #expect(result.http_ok > 100)
        #expect(result.ws_ok > 20)
        let stats = await proxy.server.stats()
        let http = try #require(stats.pools.first { $0.protocol == "http" })
        let tunnels = try #require(stats.pools.first { $0.protocol == "websocket" })
        print("pool counters: http \(http), websocket \(tunnels)")
        #expect(http.reused > 0)
        #expect(http.upgrades == 0)
        #expect(tunnels.upgrades >= result.idle_open)
        await proxy.stop()
    }

    @Test func misbehavingBackendUnderTheSameLoadHasNoCrossTalk() async throws {
        guard PythonBackend.available else { return print("skipped: python3 with tornado/websockets is missing") }
        let files = try FilesFixture()
        let backend = try PythonBackend(script: "misbehaving_backend.py", arguments: [files.directory.path])
        let proxy = try await ProxyHarness(backendPort: backend.port, routes: [route("/tts-ws")])
        let result = try drive(proxyPort: proxy.port, files: files, misbehaving: true)
        #expect(result.wrong_bodies == 0)
        #expect(result.unexpected_404 == 0)
        #expect(result.errors == 0)
        #expect(result.http_ok > 100)
        let stats = await proxy.server.stats()
        let http = try #require(stats.pools.first { $0.protocol == "http" })
        print("pool counters: \(http)")
        #expect((http.closed["unexpected_data"] ?? 0) > 0)
        await proxy.stop()
    }

    /// Proves the hazard test can fail: with a pool that takes connections back unconditionally
    /// (what the seed's proxy effectively did), the same run sees wrong bodies.
    @Test func unconditionalReuseIsCaughtByTheHazardTest() async throws {
        guard PythonBackend.available else { return print("skipped: python3 with tornado/websockets is missing") }
        let files = try FilesFixture()
        let backend = try PythonBackend(script: "misbehaving_backend.py", arguments: [files.directory.path])
        let proxy = try await ProxyHarness(
            backendPort: backend.port, routes: [route("/tts-ws")], reuseMode: .unconditionalForTesting)
        let result = try drive(proxyPort: proxy.port, files: files, misbehaving: true)
        #expect(result.wrong_bodies > 0)
        await proxy.stop()
    }
}
