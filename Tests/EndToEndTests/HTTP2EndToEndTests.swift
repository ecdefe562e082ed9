import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Issue 16, item 1, with the real binary and real HTTP/2 clients (curl, nghttp, Python's `h2`):
/// ALPN `h2` by default, each stream an exchange forwarded over the HTTP/1.1 keep-alive pools,
/// bodies both ways, many streams on one connection, and flow control that keeps a slow reader's
/// download out of Ferry's memory.
@Suite(.serialized) struct HTTP2EndToEndTests {
    /// The HTTP/1.1 backend of these tests (`scripts/h2_backend.py`) on a free port.
    static func startBackend() throws -> (port: Int, process: Process) {
        try Tool.startPythonServer(ServeEndToEndTests.scripts.appendingPathComponent("h2_backend.py").path) {
            [String($0)]
        }
    }

    static func startFerry(name: String, backend: Int, alpn: String? = nil) throws -> FerryInstance {
        try FerryInstance(name: name) { directory, port in
            FerryInstance.preamble(directory, port: port, workers: 1)
                + (alpn.map { "alpn = \($0)\n" } ?? "") + """
                    [[backend]]
                    name = "app"
                    address = "127.0.0.1:\(backend)"

                    [[route]]
                    path = "/app/"
                    backend = "app"
                    strip_prefix = "/app"

                    [[route]]
                    path = "/impatient/"
                    backend = "app"
                    strip_prefix = "/impatient"
                    response_timeout = "300ms"
                    """
        }
    }

    /// The backend's body pattern (`h2_backend.py`).
    static func pattern(_ count: Int) -> Data {
        Data((0..<count).map { UInt8(truncatingIfNeeded: $0) })
    }

    func curl(_ arguments: [String]) throws -> (status: Int32, out: String, err: String) {
        guard let curl = Tool.path("curl") else { throw E2EError("curl is not installed") }
        let result = try Tool.run(curl, ["-sk", "--max-time", "30"] + arguments)
        return (result.status, result.stdout, result.stderr)
    }

    @Test func requestsAndResponsesGoOverH2ByDefaultAndHTTP1StillWorks() throws {
        let (backendPort, backend) = try Self.startBackend()
        defer { kill(backend.processIdentifier, SIGKILL) }
        let ferry = try Self.startFerry(name: "h2-basic", backend: backendPort)
        defer { ferry.stop() }
        let base = "https://127.0.0.1:\(ferry.httpsPort)"
        let output = ferry.directory.appendingPathComponent("body").path
        for (path, size) in [("/app/bytes/100000", 100_000), ("/app/chunked/300000", 300_000), ("/app/bytes/0", 0)] {
            let result = try curl(["--http2", "-o", output, "-w", "%{http_version} %{http_code}", base + path])
            #expect(result.out == "2 200", "\(path): \(result.out) \(result.err)")
            let body = try Data(contentsOf: URL(fileURLWithPath: output))
            #expect(body == Self.pattern(size), "\(path): \(body.count) bytes")
        }
        let http1 = try curl([
            "--http1.1", "-o", "/dev/null", "-w", "%{http_version} %{http_code}", base + "/app/bytes/10",
        ])
        #expect(http1.out == "1.1 200")
        // HEAD: the backend's length, no body.
        let head = try curl(["--http2", "-I", base + "/app/bytes/5000"])
        #expect(head.out.lowercased().contains("content-length: 5000"), "\(head.out)")
        // The backend sees HTTP/1.1 with Host from :authority and the forwarding headers.
        let echoed = try curl(["--http2", "-H", "X-Test: one", base + "/app/headers"])
        let fields = try JSONSerialization.jsonObject(with: Data(echoed.out.utf8)) as? [[String]] ?? []
        let names = Dictionary(fields.map { ($0[0].lowercased(), $0[1]) }, uniquingKeysWith: { $1 })
        #expect(names["host"] == "127.0.0.1:\(ferry.httpsPort)", "\(fields)")
        #expect(names["x-test"] == "one")
        #expect(names["x-forwarded-for"] == "127.0.0.1")
        #expect(names["x-forwarded-proto"] == "https")
        // A backend slower than the route's response timeout: 504 on the stream (the deadline is
        // checked by the loop's sweep), and the connection serves on.
        let late = try curl(["--http2", "-w", " %{http_code}", base + "/impatient/slow/1500", base + "/app/bytes/3"])
        #expect(late.out.hasPrefix("ferry: backend did not answer in time"), "\(late.out)")
        #expect(late.out.contains(" 504") && late.out.hasSuffix(" 200"), "\(late.out)")
        // A local answer (no route) over h2.
        let missing = try curl(["--http2", "-o", "/dev/null", "-w", "%{http_version} %{http_code}", base + "/nowhere"])
        #expect(missing.out == "2 404")
        // nghttp, the reference client of nghttp2: five streams on one connection.
        if let nghttp = Tool.path("nghttp") {
            let result = try Tool.run(nghttp, ["-ns", "-m", "5", base + "/app/bytes/2048"])
            let codes = result.stdout.split(separator: "\n").filter { $0.contains("/app/bytes/2048") }
            #expect(codes.count == 5 && codes.allSatisfy { $0.contains(" 200 ") }, "\(result.stdout)\(result.stderr)")
        } else {
            print("nghttp is not installed: its part is skipped")
        }
        let log = ferry.log()
        #expect(log.contains("\"GET /app/bytes/100000 HTTP/2.0\" 200"), "the access log names the protocol")
        #expect(log.contains("\"GET /app/bytes/10 HTTP/1.1\" 200"))
    }

    @Test func requestBodiesArriveWholeWithAndWithoutContentLength() throws {
        let (backendPort, backend) = try Self.startBackend()
        defer { kill(backend.processIdentifier, SIGKILL) }
        let ferry = try Self.startFerry(name: "h2-post", backend: backendPort)
        defer { ferry.stop() }
        let file = ferry.directory.appendingPathComponent("upload")
        var generator = SystemRandomNumberGenerator()
        let body = Data((0..<(8 << 20)).map { _ in UInt8.random(in: 0...255, using: &generator) })
        try body.write(to: file)
        let digest = try Tool.run(try #require(Tool.path("sha256sum")), [file.path]).stdout.prefix(64)
        let url = "https://127.0.0.1:\(ferry.httpsPort)/app/sha"
        // With Content-Length (curl --data-binary), then streamed from stdin (no length: the
        // backend gets it chunked).
        for arguments in [
            ["--data-binary", "@" + file.path], ["-X", "POST", "-T", file.path, "-H", "Content-Length:"],
        ] {
            let result = try curl(["--http2", "-w", " %{http_version}"] + arguments + [url])
            #expect(result.out.hasSuffix(" 2"), "\(result.out) \(result.err)")
            #expect(result.out.contains("\"length\": \(body.count)"), "\(arguments): \(result.out)")
            #expect(result.out.contains(String(digest)), "\(arguments): \(result.out)")
        }
    }

    @Test func manyStreamsOnOneConnectionInterleaveSmallAndLargeResponses() throws {
        guard Tool.pythonHas("h2") else {
            print("skipped: Python's h2 is missing")
            return
        }
        let (backendPort, backend) = try Self.startBackend()
        defer { kill(backend.processIdentifier, SIGKILL) }
        let ferry = try Self.startFerry(name: "h2-streams", backend: backendPort)
        defer { ferry.stop() }
        var paths: [String] = []
        for index in 0..<60 {
            switch index % 6 {
            case 0: paths.append("/app/bytes/\(3 << 20)")
            case 1: paths.append("/app/chunked/\(700_000 + index)")
            default: paths.append("/app/bytes/\(index * 37)")
            }
        }
        let result = try Tool.run(
            try #require(Tool.path("python3")),
            [
                ServeEndToEndTests.scripts.appendingPathComponent("h2_client.py").path, String(ferry.httpsPort),
                "streams",
            ]
                + paths, timeout: 60)
        #expect(result.stdout == "ok 60\n", "\(result.stdout)\(result.stderr)\n\(ferry.log().suffix(2000))")
    }

    /// A 1 GiB download whose reader stops opening its flow-control window: Ferry sends what the
    /// window allows and holds little more (the backend is paused), then goes on when the window
    /// opens again. Without backpressure the worker would take in the backend's bytes at loopback
    /// speed (hundreds of MB in the stall).
    @Test func aSlowReaderDoesNotMakeFerryBufferTheDownload() throws {
        guard Tool.pythonHas("h2") else {
            print("skipped: Python's h2 is missing")
            return
        }
        let (backendPort, backend) = try Self.startBackend()
        defer { kill(backend.processIdentifier, SIGKILL) }
        let ferry = try Self.startFerry(name: "h2-slow", backend: backendPort)
        defer { ferry.stop() }
        let master = MasterEndToEndTests()
        let worker = try master.waitFor(ferry) { $0.workers.contains { $0.state == "ready" } }.workers[0].pid
        _ = try curl(["--http2", "-o", "/dev/null", "https://127.0.0.1:\(ferry.httpsPort)/app/bytes/1000"])
        let before = try master.residentBytes(worker)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try #require(Tool.path("python3")))
        process.arguments = [
            ServeEndToEndTests.scripts.appendingPathComponent("h2_client.py").path, String(ferry.httpsPort), "slow",
            "/app/bytes/\(1 << 30)", "3",
        ]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        var peak = 0
        let deadline = Date().addingTimeInterval(45)
        while process.isRunning && Date() < deadline {
            peak = max(peak, try master.residentBytes(worker))
            Thread.sleep(forTimeInterval: 0.1)
        }
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(text.contains("resumed"), "\(text)\n\(ferry.log().suffix(2000))")
        let stalledAt =
            text.split(separator: "\n").first { $0.hasPrefix("stalled at ") }
            .flatMap { Int($0.dropFirst("stalled at ".count)) } ?? -1
        // 1 MiB read, then at most the windows' worth (64 KiB per stream by default) in the stall.
        #expect(stalledAt >= 1 << 20 && stalledAt < (1 << 20) + 256 * 1024, "\(text)")
        let growth = peak - before
        print("worker RSS \(before / 1024) KiB before, \(peak / 1024) KiB at peak (+\(growth / 1024) KiB)")
        #expect(growth < 48 << 20, "the worker grew by \(growth / 1024) KiB while its client did not read")
        // The worker serves on after the client reset the stream mid-download.
        let after = try curl([
            "--http2", "-o", "/dev/null", "-w", "%{http_code}", "https://127.0.0.1:\(ferry.httpsPort)/app/bytes/10",
        ])
        #expect(after.out == "200")
    }

    @Test func alpnWithoutH2KeepsClientsOnHTTP1() throws {
        let (backendPort, backend) = try Self.startBackend()
        defer { kill(backend.processIdentifier, SIGKILL) }
        let ferry = try Self.startFerry(name: "h2-off", backend: backendPort, alpn: "[\"http/1.1\"]")
        defer { ferry.stop() }
        let result = try curl([
            "--http2", "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
            "https://127.0.0.1:\(ferry.httpsPort)/app/bytes/10",
        ])
        #expect(result.out == "1.1 200")
    }
}
