import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Pebble, the ACME test CA, with pebble-challtestsrv as its DNS, on loopback in a temporary
/// directory, for end-to-end tests of Ferry's ACME client.
///
/// challtestsrv answers every A query with 127.0.0.1, so Pebble validates any name against
/// 127.0.0.1:`httpPort` (HTTP-01) and 127.0.0.1:`tlsPort` (TLS-ALPN-01). Pebble makes a fresh root
/// at each start: fetch it with `issuingRootPEM()` after the start, never cache it.
final class PebbleHarness: @unchecked Sendable {
    let directory: URL
    let apiPort: Int
    let managementPort: Int
    /// challtestsrv's DNS server (UDP and TCP on 127.0.0.1).
    let dnsPort: Int
    let challengeManagementPort: Int
    /// The PEM a client must trust to talk to the ACME API and the management interface.
    let apiCertificatePath: String
    private let pebble = Process()
    private let challtestsrv = Process()
    private let logPaths: [String]

    /// The ACME directory.
    var directoryURL: String { "https://127.0.0.1:\(apiPort)/dir" }
    /// Pebble's management interface (roots, intermediates, certificate status).
    var managementURL: String { "https://127.0.0.1:\(managementPort)" }

    /// Starts challtestsrv, then Pebble, and waits (bounded by `timeout`) until Pebble's API
    /// accepts connections. `validitySeconds` sets the lifetime of issued certificates.
    /// `externalAccountKeys`: key id → base64url HMAC key; when given, Pebble requires External
    /// Account Binding (RFC 8555 §7.3.4) for new accounts.
    init(
        httpPort: Int, tlsPort: Int, validitySeconds: Int? = nil, externalAccountKeys: [String: String]? = nil,
        timeout: TimeInterval = 15
    ) throws {
        guard let pebblePath = Tool.path("pebble"), let challPath = Tool.path("pebble-challtestsrv") else {
            throw E2EError("pebble is not installed")
        }
        guard let openssl = Tool.path("openssl") else { throw E2EError("openssl is not installed") }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "ferry-pebble-\(UUID().uuidString.prefix(8))")
        self.directory = directory
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        func file(_ name: String) -> String { directory.appendingPathComponent(name).path }
        apiCertificatePath = file("pebble-api.crt")
        let keyPath = file("pebble-api.key")
        let generated = try Tool.run(
            openssl,
            [
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", keyPath, "-out", apiCertificatePath, "-days", "30", "-subj", "/CN=localhost",
                "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            ], timeout: 15)
        guard generated.status == 0 else { throw E2EError("openssl req failed: \(generated.stderr)") }
        apiPort = try FreePort.pick()
        managementPort = try FreePort.pick()
        dnsPort = try FreePort.pick()
        challengeManagementPort = try FreePort.pick()

        var settings: [String: Any] = [
            "listenAddress": "127.0.0.1:\(apiPort)",
            "managementListenAddress": "127.0.0.1:\(managementPort)",
            "certificate": apiCertificatePath,
            "privateKey": keyPath,
            "httpPort": httpPort,
            "tlsPort": tlsPort,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": externalAccountKeys != nil,
        ]
        if let externalAccountKeys { settings["externalAccountMACKeys"] = externalAccountKeys }
        // Pebble's config struct has no JSON tags; Go matches the field CertificateValidityPeriod.
        if let validitySeconds { settings["certificateValidityPeriod"] = validitySeconds }
        let configPath = file("pebble-config.json")
        try JSONSerialization.data(withJSONObject: ["pebble": settings], options: [.prettyPrinted, .sortedKeys])
            .write(to: URL(fileURLWithPath: configPath))

        let challLog = file("challtestsrv.log")
        let pebbleLog = file("pebble.log")
        logPaths = [challLog, pebbleLog]
        try Self.start(
            challtestsrv, challPath,
            [
                "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "", "-dns01", "127.0.0.1:\(dnsPort)",
                "-http01", "", "-https01", "", "-tlsalpn01", "", "-management", "127.0.0.1:\(challengeManagementPort)",
            ], log: challLog)
        let deadline = Date().addingTimeInterval(timeout)
        // The management port listens once challtestsrv is up (its DNS server starts alongside).
        try waitUntilAccepting(challengeManagementPort, of: challtestsrv, "pebble-challtestsrv", deadline)
        try Self.start(
            pebble, pebblePath, ["-config", configPath, "-dnsserver", "127.0.0.1:\(dnsPort)"], log: pebbleLog,
            environment: ["PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"])
        try waitUntilAccepting(apiPort, of: pebble, "pebble", deadline)
    }

    /// Runs `executable` with its stdout and stderr appended to `log`, with PATH inherited.
    private static func start(
        _ process: Process, _ executable: String, _ arguments: [String], log: String,
        environment: [String: String] = [:]
    ) throws {
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        defer { try? handle.close() }  // the child has its own copy
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var env = environment
        env["PATH"] = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        process.environment = env
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
    }

    private func waitUntilAccepting(_ port: Int, of process: Process, _ name: String, _ deadline: Date) throws {
        while Date() < deadline {
            if !process.isRunning {
                stop()
                throw E2EError("\(name) exited with \(process.terminationStatus) before listening:\n\(logTail())")
            }
            if FreePort.accepts(port: port) { return }
            Thread.sleep(forTimeInterval: 0.05)
        }
        stop()
        throw E2EError("\(name) did not listen on 127.0.0.1:\(port) in time:\n\(logTail())")
    }

    /// Both logs, challtestsrv's first, for failure messages.
    var log: String {
        logPaths.map { path in
            "--- \((path as NSString).lastPathComponent)\n"
                + ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "")
        }.joined(separator: "\n")
    }

    private func logTail(lines: Int = 40) -> String {
        log.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }

    /// The PEM of the root that signs this run's certificates (from the management interface).
    func issuingRootPEM() throws -> String {
        guard let curl = Tool.path("curl") else { throw E2EError("curl is not installed") }
        let out = try Tool.run(
            curl, ["-sS", "--max-time", "10", "--cacert", apiCertificatePath, managementURL + "/roots/0"], timeout: 15)
        guard out.status == 0, out.stdout.contains("BEGIN CERTIFICATE") else {
            throw E2EError("GET /roots/0 failed (\(out.status)): \(out.stderr)\(out.stdout)\n\(logTail())")
        }
        return out.stdout
    }

    /// Writes the issuing root to `path`, e.g. for `curl --cacert` against Ferry.
    func writeIssuingRoot(to path: String) throws {
        try issuingRootPEM().write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// Stops both processes with SIGKILL (they keep nothing worth a graceful stop, and a SIGTERM
    /// may be blocked in children of the test) and reaps them, bounded.
    func stop() {
        for process in [pebble, challtestsrv] where process.processIdentifier > 0 {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            let deadline = Date().addingTimeInterval(5)
            while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        }
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(at: directory)
    }
}
