import Foundation
import Testing

@testable import FerryConfig

@Suite struct TicketKeyFileTests {
    static func key(_ fill: UInt8) -> [UInt8] { (0..<80).map { UInt8($0) &+ fill } }
    static func line(_ key: [UInt8]) -> String { Data(key).base64EncodedString() }

    @Test func textLinesInOrderWithCommentsAndBlankLines() throws {
        let text = "# rotated 2026-12-06\n\n\(Self.line(Self.key(1)))\r\n  \(Self.line(Self.key(2)))  \n# old\n"
        #expect(try TicketKeyFile.parse(Array(text.utf8)) == [Self.key(1), Self.key(2)])
    }

    @Test func nginxBinaryFilesOfWholeKeys() throws {
        var generator = SystemRandomNumberGenerator()
        let random = (0..<160).map { _ in UInt8.random(in: 128...255, using: &generator) }
        #expect(try TicketKeyFile.parse(random) == [Array(random[0..<80]), Array(random[80..<160])])
    }

    @Test(arguments: [
        ("", "holds no key (generate one: ferry tls generate-ticket-key)"),
        ("# only a comment\n", "holds no key (generate one: ferry tls generate-ticket-key)"),
        ("not base64 at all!\n", "line 1: not base64"),
        ("# c\n\(Data([1, 2, 3]).base64EncodedString())\n", "line 2: a key is 80 bytes (108 base64 characters), got 3"),
    ])
    func badFilesAreRefusedWithTheLine(text: String, reason: String) {
        #expect(throws: TicketKeyFile.Failure.self) { try TicketKeyFile.parse(Array(text.utf8)) }
        do { _ = try TicketKeyFile.parse(Array(text.utf8)) } catch { #expect("\(error)" == reason) }
    }

    @Test func binaryOfAWrongSizeDuplicateNamesAndTooManyKeysAreRefused() {
        #expect(throws: TicketKeyFile.Failure.self) { try TicketKeyFile.parse([UInt8](repeating: 0xff, count: 81)) }
        let twice = "\(Self.line(Self.key(1)))\n\(Self.line(Self.key(1)))\n"
        #expect(throws: TicketKeyFile.Failure.self) { try TicketKeyFile.parse(Array(twice.utf8)) }
        let many = (0...64).map { Self.line(Self.key(UInt8($0))) }.joined(separator: "\n")
        #expect(throws: TicketKeyFile.Failure.self) { try TicketKeyFile.parse(Array(many.utf8)) }
    }

    @Test func generatedLinesAreDistinctValidKeys() throws {
        let lines = (0..<3).map { _ in TicketKeyFile.generateLine() }
        #expect(Set(lines).count == 3)
        #expect(try TicketKeyFile.parse(Array(lines.joined(separator: "\n").utf8)).count == 3)
    }

    @Test func configurationNamesTheFileAndCheckRefusesABadOneWithFileLine() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-tk-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let good = directory.appendingPathComponent("good.keys").path
        let bad = directory.appendingPathComponent("bad.keys").path
        try (Self.line(Self.key(7)) + "\n").write(toFile: good, atomically: true, encoding: .utf8)
        try "oops!\n".write(toFile: bad, atomically: true, encoding: .utf8)
        func source(_ path: String) -> String {
            """
            [[listen]]
            name = "https"
            address = "127.0.0.1:8443"
            [listen.tls]
            certificate = "\(directory.path)/cert.pem"
            key = "\(directory.path)/key.pem"
            self_signed = true
            ticket_keys = "\(path)"

            [[backend]]
            name = "tts"
            address = "127.0.0.1:8001"

            [[route]]
            path = "/"
            backend = "tts"
            """
        }
        let loaded = try load(source(good), checkFiles: true)
        #expect(loaded.configuration.listeners[0].tls?.ticketKeysPath == good)
        let diagnostics = errors(source(bad), checkFiles: true)
        #expect(
            diagnostics.map(\.description) == [
                "test.toml:8:1: error: listen[1].tls.ticket_keys: '\(bad)': line 1: not base64"
            ])
        let missing = errors(source(directory.path + "/none.keys"), checkFiles: true)
        #expect(missing.first?.message.contains("No such file or directory") == true, "\(missing)")
        // A worker loads without checking files: the master read them.
        #expect(try load(source(bad)).configuration.listeners[0].tls?.ticketKeysPath == bad)
    }
}

@Suite struct AdminSectionTests {
    @Test func adminListenerWithCredentials() throws {
        let digest = String(repeating: "ab", count: 32)
        let config = try load(
            minimalConfig
                + "[admin]\nlisten = \"127.0.0.1:9090\"\nuser = \"ops\"\npassword_sha256 = \"\(digest.uppercased())\"\n"
        ).configuration
        #expect(
            config.admin
                == AdminSettings(listen: .inet(host: "127.0.0.1", port: 9090), user: "ops", passwordSHA256: digest))
    }

    @Test func badAdminSectionsAreRefusedWithTheKey() {
        #expect(
            errors(minimalConfig + "[admin]\nlisten = \"127.0.0.1:9090\"\nuser = \"ops\"\n").map(\.keyPath) == [
                "admin.user"
            ])
        #expect(
            errors(
                minimalConfig + "[admin]\nlisten = \"127.0.0.1:9090\"\nuser = \"ops\"\npassword_sha256 = \"secret\"\n"
            )
            .map(\.keyPath) == ["admin.password_sha256"])
        #expect(errors(minimalConfig + "[admin]\nlisten = \"systemd:admin\"\n").map(\.keyPath) == ["admin.listen"])
        #expect(errors(minimalConfig + "[admin]\n").first?.message.contains("missing required key 'listen'") == true)
    }

    @Test func aPublicAdminListenerWithoutCredentialsOrOnAListenersPortIsLinted() throws {
        let open = try load(minimalConfig + "[admin]\nlisten = \"0.0.0.0:9090\"\n")
        #expect(open.warnings.contains { $0.keyPath == "admin.listen" && $0.message.contains("get 403") })
        let shared = try load(minimalConfig + "[admin]\nlisten = \"127.0.0.1:8080\"\n")
        #expect(shared.warnings.contains { $0.message.contains("shares port 8080 with listener 'http'") })
        #expect(try load(minimalConfig + "[admin]\nlisten = \"127.0.0.1:9090\"\n").warnings.isEmpty)
    }
}
