import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Issue 16, item 3: the known HTTP/2 attacks, sent frame by frame by a raw client
/// (`scripts/h2_attacks.py`: hyperframe and hpack, no client-side checks) to a one-worker Ferry,
/// each answered as documented (docs/decisions.md, "HTTP/2 hardening") and counted in status,
/// while another client on the same worker keeps being served within its usual latency.
@Suite(.serialized) struct HTTP2HardeningEndToEndTests {
    static let attacks = ServeEndToEndTests.scripts.appendingPathComponent("h2_attacks.py").path

    /// (attack and its arguments, what the attacker must see first)
    static let cases: [([String], String)] = [
        (["rapid_reset", "1000"], "goaway 11"),  // ENHANCE_YOUR_CALM
        (["continuation", "100"], "goaway 11"),
        (["ping_flood", "1000"], "goaway 11"),
        (["settings_flood", "1000"], "goaway 11"),
        (["big_headers", "40000"], "goaway 1"),  // PROTOCOL_ERROR: past SETTINGS_MAX_HEADER_LIST_SIZE
        (["zero_window", "/"], "reset 8"),  // CANCEL after send_timeout
        // Malformed requests (RFC 9113 §8.2, §8.1.1): the stream is reset with PROTOCOL_ERROR,
        // nothing reaches a backend, the connection goes on.
        (["bad_header", "x-a", "a\\r\\nb"], "reset 1"),
        (["bad_header", "X-Upper", "v"], "reset 1"),
        (["bad_header", "x:y", "z"], "reset 1"),
        (["bad_header", "transfer-encoding", "chunked"], "reset 1"),
        (["bad_header", "connection", "close"], "reset 1"),
        (["bad_header", "te", "gzip"], "reset 1"),
        (["bad_header", "content-length", "5"], "reset 1"),  // a GET that ends without the 5 bytes
        // Resets provoked by malformed requests ("MadeYouReset"): past 200, the connection ends.
        (["made_you_reset", "1000"], "goaway 11"),
    ]

    @Test func eachAttackIsAnsweredAsDocumentedWhileAnotherClientIsServed() throws {
        guard Tool.pythonHas("h2"), let python = Tool.path("python3"), let curl = Tool.path("curl") else {
            return print("skipped: python3 with h2, or curl, is missing")
        }
        let ferry = try FerryInstance(name: "h2-attacks") { directory, port in
            FerryInstance.preamble(directory, port: port, workers: 1) + """
                [http2]
                send_timeout = "1s"

                [[route]]
                path = "/"
                respond = 200
                body = "hello from ferry\\n"
                """
        }
        defer { ferry.stop() }
        let url = "https://127.0.0.1:\(ferry.httpsPort)/"
        /// One request by another client (HTTP/2, its own connection): its status and seconds.
        func probe() throws -> (String, TimeInterval) {
            let started = Date()
            let result = try Tool.run(
                curl, ["-sk", "--http2", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}", url])
            return (result.stdout, Date().timeIntervalSince(started))
        }
        let baseline = try (0..<5).map { _ in try probe().1 }.max() ?? 0
        for (arguments, expected) in Self.cases {
            let attacker = Process()
            attacker.executableURL = URL(fileURLWithPath: python)
            attacker.arguments = [Self.attacks, String(ferry.httpsPort)] + arguments
            let output = Pipe()
            attacker.standardOutput = output
            attacker.standardError = output
            try attacker.run()
            var probes: [(String, TimeInterval)] = []
            let deadline = Date().addingTimeInterval(40)
            while (attacker.isRunning || probes.count < 3) && Date() < deadline {
                probes.append(try probe())
            }
            if attacker.isRunning { attacker.terminate() }
            attacker.waitUntilExit()
            let answer = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(answer.hasPrefix(expected), "\(arguments): \(answer)")
            let slowest = probes.map(\.1).max() ?? 0
            print(
                "\(arguments[0]): \(answer.trimmingCharacters(in: .newlines)); other client: \(probes.count) requests, slowest \(Int(slowest * 1000)) ms (baseline \(Int(baseline * 1000)) ms)"
            )
            #expect(probes.allSatisfy { $0.0 == "200" }, "\(arguments): \(probes)")
            #expect(slowest < max(1.0, baseline * 5), "\(arguments): the other client waited \(slowest) s")
        }
        // Each rule is counted in status (which the workers' heartbeats refresh about once a second).
        var protocols: [String: Any] = [:]
        var refused: [String: Int] = [:]
        let counted = Date().addingTimeInterval(10)
        while Date() < counted {
            let json = try FerryBinary.run(["status", "--json", "--socket", ferry.controlSocket]).stdout
            let document = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] ?? [:]
            let worker = (document["workers"] as? [[String: Any]])?.first
            protocols = (worker?["stats"] as? [String: Any])?["protocols"] as? [String: Any] ?? [:]
            refused = protocols["http2Refused"] as? [String: Int] ?? [:]
            if refused.values.reduce(0, +) >= 14 + 200 { break }
            Thread.sleep(forTimeInterval: 0.2)
        }
        print("refused: \(refused)")
        #expect(refused["rapid_reset"] == 1)
        #expect(refused["continuation_flood"] == 1)
        #expect(refused["control_frame_flood"] == 2)
        #expect(refused["header_list_too_large"] == 1)
        #expect(refused["zero_window"] == 1)
        // 7 bad_header requests, and the made_you_reset ones up to the limit (some more may have
        // been read before the GOAWAY closed the connection).
        #expect((refused["malformed"] ?? 0) >= 7 + 201)
        #expect(refused["glitches"] == 1)
        #expect((protocols["http2Connections"] as? Int ?? 0) > Self.cases.count)
        let table = try FerryBinary.run(["status", "--socket", ferry.controlSocket]).stdout
        #expect(table.contains("rapid_reset=1"), "\(table)")
    }
}
