import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Issue 19, item 2: session tickets across a fleet. Hosts sharing a `ticket_keys` file resume each
/// other's sessions; a host with keys of its own does not; a file rotated on disk reaches the
/// running workers with no reload.
@Suite(.serialized) struct TicketKeysEndToEndTests {
    /// A session from `issuer` saved with `-sess_out`, offered to `resumer` with `-sess_in`: did
    /// s_client report "Reused"? (TLS 1.3 tickets come after the handshake: the first connection
    /// sends a request and reads the answer before it ends.)
    static func resumes(issuer: Int, resumer: Int, session: String) throws -> Bool {
        guard let openssl = Tool.path("openssl") else { throw E2EError("openssl is not installed") }
        func connect(_ port: Int, _ option: String) throws -> String {
            let command =
                "(printf 'GET / HTTP/1.1\\r\\nHost: localhost\\r\\n\\r\\n'; sleep 0.3) | \(openssl) s_client -connect 127.0.0.1:\(port) \(option) \(session) 2>&1"
            let output = try Tool.run("/bin/sh", ["-c", command]).stdout
            guard output.contains("served") else { throw E2EError("no answer from port \(port):\n\(output)") }
            return output
        }
        _ = try connect(issuer, "-sess_out")
        return try connect(resumer, "-sess_in").contains("\nReused, ")
    }

    static func host(_ name: String, workers: Int, keys: String?, certificateFrom: FerryInstance? = nil) throws
        -> FerryInstance
    {
        try FerryInstance(name: name) { dir, port in
            var config = FerryInstance.preamble(dir, port: port, workers: workers)
            if let other = certificateFrom {
                // The fleet's one certificate: the first host's.
                config = config.replacingOccurrences(
                    of: "\(dir.path)/state/tls/selfsigned", with: "\(other.stateDirectory)/tls/selfsigned"
                )
                .replacingOccurrences(of: "self_signed = true", with: "self_signed = false")
            }
            if let keys { config += "ticket_keys = \"\(keys)\"\n\n" }
            return config + """
                [[route]]
                path = "/"
                respond = 200
                body = "served\\n"
                """
        }
    }

    @Test func hostsSharingTheFileResumeEachOthersSessionsAndARotationOnDiskReachesRunningWorkers() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "ferry-tk-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let shared = directory.appendingPathComponent("fleet.keys").path
        let rotatedOnly = directory.appendingPathComponent("rotated.keys").path
        // The CLI writes the files: a fresh one, then a second key put first, keeping two.
        let generate = try Tool.run(FerryBinary.url.path, ["tls", "generate-ticket-key", "--prepend", shared])
        #expect(generate.status == 0, "\(generate.stdout)")
        let firstKey = try String(contentsOfFile: shared, encoding: .utf8).split(separator: "\n").last.map(String.init)
        var info = stat()
        #expect(stat(shared, &info) == 0 && info.st_mode & 0o777 == 0o600)

        let hostA = try Self.host("tk-a", workers: 2, keys: shared)
        defer { hostA.stop() }
        let hostB = try Self.host("tk-b", workers: 1, keys: shared, certificateFrom: hostA)
        defer { hostB.stop() }
        let hostC = try Self.host("tk-c", workers: 1, keys: nil, certificateFrom: hostA)
        defer { hostC.stop() }
        let session = directory.appendingPathComponent("s").path
        #expect(try Self.resumes(issuer: hostA.httpsPort, resumer: hostB.httpsPort, session: session))
        #expect(try Self.resumes(issuer: hostB.httpsPort, resumer: hostA.httpsPort, session: session))
        #expect(try !Self.resumes(issuer: hostA.httpsPort, resumer: hostC.httpsPort, session: session), "own keys")

        // Host D knows only the next key. Before the rotation, A's tickets do not resume there.
        let printed = try Tool.run(FerryBinary.url.path, ["tls", "generate-ticket-key"]).stdout
        let nextKey = printed.trimmingCharacters(in: .whitespacesAndNewlines)
        try "\(nextKey)\n".write(toFile: rotatedOnly, atomically: true, encoding: .utf8)
        let hostD = try Self.host("tk-d", workers: 1, keys: rotatedOnly, certificateFrom: hostA)
        defer { hostD.stop() }
        #expect(try !Self.resumes(issuer: hostA.httpsPort, resumer: hostD.httpsPort, session: session))
        // The rotation's first step on A's file, by hand as an operator would: the next key first.
        try "# rotated\n\(nextKey)\n\(firstKey ?? "")\n".write(toFile: shared, atomically: true, encoding: .utf8)
        let deadline = Date().addingTimeInterval(5)
        while !hostA.log().contains("session ticket keys reloaded") && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.05)
        }
        #expect(hostA.log().contains("session ticket keys reloaded"))
        Thread.sleep(forTimeInterval: 0.3)  // the workers apply the message
        // Every new ticket from A (either worker) is now under the next key; B still knows only the
        // first key, and A still decrypts B's tickets (all keys decrypt).
        for attempt in 0..<4 {
            #expect(
                try Self.resumes(issuer: hostA.httpsPort, resumer: hostD.httpsPort, session: session),
                "attempt \(attempt)")
        }
        #expect(try Self.resumes(issuer: hostB.httpsPort, resumer: hostA.httpsPort, session: session))
        // A file broken on disk is reported and the keys in use stay.
        try "broken!\n".write(toFile: shared, atomically: true, encoding: .utf8)
        let reported = Date().addingTimeInterval(5)
        while !hostA.log().contains("session ticket keys not reloaded") && Date() < reported {
            Thread.sleep(forTimeInterval: 0.05)
        }
        #expect(hostA.log().contains("session ticket keys not reloaded"))
        #expect(try Self.resumes(issuer: hostA.httpsPort, resumer: hostD.httpsPort, session: session))
        #expect(hostA.process.isRunning)
    }

    @Test func generateTicketKeyKeepsTheNewestKeysFirstAndCheckRefusesABadFileWithItsLine() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "ferry-tk-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("t.keys").path
        var firstLines: [String] = []
        for _ in 0..<3 {
            let result = try Tool.run(
                FerryBinary.url.path, ["tls", "generate-ticket-key", "--prepend", file, "--keep", "2"])
            #expect(result.status == 0)
            let keys = try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n").filter {
                !$0.hasPrefix("#")
            }
            firstLines.append(String(keys[0]))
            if firstLines.count > 1 { #expect(keys[1] == firstLines[firstLines.count - 2]) }
            #expect(keys.count == min(firstLines.count, 2))
            #expect(keys.allSatisfy { Data(base64Encoded: String($0))?.count == 80 })
        }
        #expect(Set(firstLines).count == 3)
        try "not a key\n".write(toFile: file, atomically: true, encoding: .utf8)
        let refused = try Tool.run(FerryBinary.url.path, ["tls", "generate-ticket-key", "--prepend", file])
        #expect(refused.status == 1)
        #expect(try String(contentsOfFile: file, encoding: .utf8) == "not a key\n", "a bad file is left alone")
        // `ferry check` names the key and the line.
        let config = directory.appendingPathComponent("ferry.toml").path
        let state = directory.appendingPathComponent("state").path
        try """
        [master]
        control_socket = "\(state)/control.sock"
        state_dir = "\(state)"
        [[listen]]
        name = "https"
        address = "127.0.0.1:1"
        [listen.tls]
        certificate = "\(state)/c.pem"
        key = "\(state)/k.pem"
        self_signed = true
        ticket_keys = "\(file)"
        [[route]]
        path = "/"
        respond = 204
        """.write(toFile: config, atomically: true, encoding: .utf8)
        let check = try Tool.run(FerryBinary.url.path, ["check", "--config", config])
        #expect(check.status != 0)
        #expect(
            (check.stdout + check.stderr).contains(
                "ferry.toml:11:1: error: listen[1].tls.ticket_keys: '\(file)': line 1: not base64"),
            "\(check.stdout)\(check.stderr)")
    }
}
