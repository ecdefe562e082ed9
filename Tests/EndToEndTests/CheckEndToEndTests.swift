import Foundation
import Testing

/// `ferry check` through the real binary, as an operator runs it (like `nginx -t`).
@Suite struct CheckEndToEndTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    func write(_ text: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-check-\(UUID()).toml").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func embeddedDefaultIsValid() throws {
        let result = try FerryBinary.run(["check"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("ferry: configuration <embedded default> is valid"))
    }

    /// Issue 14, item 1: a route host that the certificate presented for it does not cover is
    /// named with its line; a covered one (exact or through the certificate's wildcard) is not.
    @Test func hostsThatNoCertificateCoversAreReported() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-check-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let main = try SitesEndToEndTests.certificate("main", ["example.org", "*.example.org"], in: directory)
        let other = try SitesEndToEndTests.certificate("other", ["other.example"], in: directory)
        let path = try write(
            """
            [[listen]]
            name = "https"
            address = "127.0.0.1:8443"
            [listen.tls]
            certificate = "\(main.cert)"
            key = "\(main.key)"
            [[listen.tls.sni]]
            certificate = "\(other.cert)"
            key = "\(other.key)"
            server_names = ["other.example", "*.other.example"]

            [[route]]
            path = "/"
            hosts = ["example.org", "*.example.org", "other.example"]
            respond = 200

            [[route]]
            path = "/"
            hosts = ["missing.example", "*.other.example"]
            respond = 200
            """)
        let result = try FerryBinary.run(["check", "--config", path])
        #expect(result.status == 0, "warnings only: \(result.stderr)")
        let warnings = result.stderr.split(separator: "\n").filter { $0.contains("is not covered") }
        #expect(warnings.count == 2, "\(result.stderr)")
        #expect(warnings.contains { $0.contains("\(path):19:1: warning: route[2].hosts: 'missing.example'") })
        #expect(warnings.contains { $0.contains("'*.other.example'") && $0.contains("other.crt") })
    }

    @Test func brokenConfigNamesEveryProblemWithFileAndLine() throws {
        let path = try write(
            """
            [master]
            graceful_timeout = "soon"

            [[listen]]
            name = "https"
            address = "127.0.0.1:8443"
            tls_mode = "on"
            [listen.tls]
            certificate = "/nonexistent/cert.pem"
            key = "/nonexistent/key.pem"

            [[backend]]
            name = "tts"
            address = "127.0.0.1:8001"

            [[route]]
            path = "/tts-ws"
            backend = "ttss"
            """)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let result = try FerryBinary.run(["check", "--config", path])
        #expect(result.status == 1)
        #expect(result.stderr.contains("\(path):2:1: error: master.graceful_timeout: 'soon' is not a duration"))
        #expect(result.stderr.contains("\(path):7:1: error: listen[1].tls_mode: unknown key 'tls_mode'"))
        #expect(
            result.stderr.contains("\(path):9:1: error: listen[1].tls.certificate: cannot read '/nonexistent/cert.pem'")
        )
        #expect(result.stderr.contains("\(path):18:1: error: route[1].backend: no backend named 'ttss' (known: tts)"))
        #expect(result.stderr.contains("is invalid"))
    }

    @Test func seedsNaiveConfigGetsTheHazardWarning() throws {
        let path = try write(
            """
            [[listen]]
            name = "https"
            address = "127.0.0.1:8443"

            [[backend]]
            name = "tts"
            command = ["python3", "app.py"]
            address = "127.0.0.1:8001"

            [[route]]
            path = "/tts-ws"
            backend = "tts"
            protocol = "websocket"
            """)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let result = try FerryBinary.run(["check", "--config", path])
        #expect(result.status == 0)
        #expect(result.stderr.contains("\(path):13:1: warning: route[1].protocol:"))
        #expect(result.stderr.contains("protocol = \"auto\""))
        #expect(result.stdout.contains("is valid"))
    }

    @Test func exampleFileFailsOnlyOnItsAbsentCertificates() throws {
        guard !FileManager.default.fileExists(atPath: "/etc/ferry/cert.pem") else { return }
        let example = Self.root.appendingPathComponent("config.example.toml").path
        let result = try FerryBinary.run(["check", "--config", example])
        #expect(result.status == 1)
        let errors = result.stderr.split(separator: "\n").filter { $0.contains(": error: ") }
        #expect(errors.count == 2, "\(result.stderr)")
        #expect(errors.allSatisfy { $0.contains("/etc/ferry/") })
    }
}
