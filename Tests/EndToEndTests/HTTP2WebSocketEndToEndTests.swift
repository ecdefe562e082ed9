import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Issue 16, item 2, with the real binary and a real RFC 8441 client (Python's `h2` driving
/// extended CONNECT, `scripts/h2_client.py`): WebSockets over HTTP/2 streams to the built-in speech
/// service and to Tornado, the seed's hazard with HTTP/2 and HTTP/1.1 clients mixed, the statuses
/// of refused extended CONNECTs, and the drain's 1001 + GOAWAY.
@Suite(.serialized) struct HTTP2WebSocketEndToEndTests {
    static let client = ServeEndToEndTests.scripts.appendingPathComponent("h2_client.py").path

    static func python(_ arguments: [String], timeout: TimeInterval = 60) throws -> String {
        let result = try Tool.run(try #require(Tool.path("python3")), arguments, timeout: timeout)
        return result.stdout + result.stderr
    }

    /// The seed's Tornado app (WebSocket echo at /tts, files at /tts/wav/) on a free port, serving
    /// a few random files from `directory`.
    static func startTornado(files directory: URL) throws -> (port: Int, process: Process) {
        let wav = directory.appendingPathComponent("wav")
        try FileManager.default.createDirectory(at: wav, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(
            at: directory.appendingPathComponent("mp3"), withIntermediateDirectories: true)
        var generator = SystemRandomNumberGenerator()
        for index in 1...6 {
            let bytes = (0..<(index * 23_000)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            try Data(bytes).write(to: wav.appendingPathComponent("f\(index).wav"))
        }
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../FerryProxyTests/Fixtures/seed_tornado_app.py").standardized.path
        return try Tool.startPythonServer(script) { [directory.path, String($0)] }
    }

    static func startFerry(name: String, tornado: Int) throws -> FerryInstance {
        try FerryInstance(name: name) { directory, port in
            FerryInstance.preamble(directory, port: port, workers: 1) + """
                [[backend]]
                name = "tornado"
                address = "127.0.0.1:\(tornado)"

                [[route]]
                path = "/tts-ws"
                backend = "tornado"
                strip_prefix = "/tts-ws"

                [[route]]
                path = "/http-only"
                backend = "tornado"
                protocol = "http"
                strip_prefix = "/http-only"

                [[route]]
                path = "/ws-only"
                backend = "tornado"
                protocol = "websocket"
                strip_prefix = "/ws-only"
                """
        }
    }

    /// Tornado on its files, and Ferry in front of it, for `body`; both stopped after it.
    static func withTornadoAndFerry(name: String, _ body: (FerryInstance, URL) throws -> Void) throws {
        let files = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-\(name)-\(UUID())")
        defer { try? FileManager.default.removeItem(at: files) }
        let (tornadoPort, tornado) = try startTornado(files: files)
        defer { kill(tornado.processIdentifier, SIGKILL) }
        let ferry = try startFerry(name: name, tornado: tornadoPort)
        defer { ferry.stop() }
        try body(ferry, files)
    }

    static var available: Bool { Tool.pythonHas("h2") && Tool.pythonHas("tornado") && Tool.pythonWebSocketsAvailable() }

    @Test func theSeedPatternRunsOnOneHTTP2Connection() throws {
        guard Self.available else { return print("skipped: Python's h2, tornado or websockets is missing") }
        let ferry = try ServeEndToEndTests.startSeed(name: "h2-tts", workers: 1)
        defer { ferry.stop() }
        _ = try MasterEndToEndTests().waitFor(ferry) { $0.backends.allSatisfy { $0.state == "ready" } }
        let output = try Self.python([Self.client, String(ferry.httpsPort), "tts", "3"])
        #expect(output == "ok 3\n", "\(output)\n\(ferry.log().suffix(3000))")
        #expect(ferry.log().contains("\"CONNECT /tts-ws/tts HTTP/2.0\" 200"), "the access log shows the h2 WebSocket")
    }

    @Test func theHazardWithHTTP2AndHTTP1ClientsHasNoCrossTalk() throws {
        guard Self.available else { return print("skipped: Python's h2, tornado or websockets is missing") }
        try Self.withTornadoAndFerry(name: "h2-hazard") { ferry, files in
            let output = try Self.python(
                [
                    ServeEndToEndTests.scripts.appendingPathComponent("hazard_h2.py").path, String(ferry.httpsPort),
                    files.path, "--seconds", "3",
                ], timeout: 120)
            print("h2 hazard result: \(output)")
            let line = output.split(separator: "\n").last.map(String.init) ?? ""
            let stats = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] ?? [:]
            func count(_ key: String) -> Int { stats[key] as? Int ?? -1 }
            #expect(count("wrong_bodies") == 0, "\(output)")
            #expect(count("unexpected_404") == 0, "\(output)")
            #expect(count("errors") == 0, "\(output)")
            #expect(count("h2_ws_ok") > 20 && count("h2_http_ok") > 20, "\(output)")
            #expect(count("http_ok") > 50 && count("ws_ok") > 10, "\(output)")
        }
    }

    /// The HTTP/1 rules by analogy (docs/decisions.md, "WebSockets over HTTP/2"): a WebSocket on
    /// an HTTP-only route or a bad version is 400; an unknown `:protocol` is 400; a plain CONNECT is
    /// 405; a plain request on a WebSocket-only route is 426; a backend that answers the handshake
    /// with a success other than 101 is 502 (a 2xx would tell an HTTP/2 client its WebSocket is open).
    @Test func extendedConnectAnswersFollowTheHTTP1Rules() throws {
        guard Self.available else { return print("skipped: Python's h2, tornado or websockets is missing") }
        try Self.withTornadoAndFerry(name: "h2-rules") { ferry, files in
            let port = String(ferry.httpsPort)
            let cases: [([String], String)] = [
                (["/tts-ws/tts", "websocket", "13"], "status 200"),
                (["/ws-only/tts", "websocket", "13"], "status 200"),
                (["/http-only/tts", "websocket", "13"], "status 400"),
                (["/tts-ws/tts", "websocket", "-"], "status 400"),
                (["/tts-ws/tts", "websocket", "8"], "status 400"),
                (["/tts-ws/tts", "chat", "13"], "status 400"),
                (["/tts-ws/tts", "-", "-"], "status 405"),
                (["/tts-ws/whoami", "websocket", "13"], "status 502"),
            ]
            for (arguments, expected) in cases {
                let output = try Self.python([Self.client, port, "status"] + arguments)
                #expect(output == expected + "\n", "\(arguments): \(output)")
            }
            let plain = try Tool.run(
                try #require(Tool.path("curl")),
                ["-sk", "--http2", "-o", "/dev/null", "-w", "%{http_code}", "https://127.0.0.1:\(port)/ws-only/tts"])
            #expect(plain.stdout == "426")
            // The worker served all of it and lives on.
            let echo = try Self.python([Self.client, port, "ws", "/tts-ws/tts", "5"])
            #expect(echo == "ok 5\n", "\(echo)")
        }
    }

    /// On stop, a WebSocket over HTTP/2 gets what one over HTTP/1 gets: GOAWAY at once (no new
    /// streams), then at the drain's deadline the close code 1001, then the stream ends.
    @Test func aDrainSendsGoAwayThen1001OnWebSocketsOverHTTP2() throws {
        guard Self.available else { return print("skipped: Python's h2, tornado or websockets is missing") }
        try Self.withTornadoAndFerry(name: "h2-drain") { ferry, files in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: try #require(Tool.path("python3")))
            process.arguments = [Self.client, String(ferry.httpsPort), "hold", "/tts-ws/tts"]
            let output = Pipe()
            process.standardOutput = output
            process.standardError = output
            try process.run()
            var seen = ""
            while !seen.contains("open") && process.isRunning {
                seen += String(decoding: output.fileHandleForReading.availableData, as: UTF8.self)
            }
            kill(ferry.process.processIdentifier, SIGTERM)
            let deadline = Date().addingTimeInterval(20)
            while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }
            if process.isRunning { process.terminate() }
            seen += String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(seen.contains("close 1001"), "\(seen)\n\(ferry.log().suffix(2000))")
            #expect(seen.contains("ended True reset None goaway True"), "\(seen)")
        }
    }
}
