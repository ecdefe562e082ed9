import Foundation
import Testing

/// Issue 17 against Pebble (the ACME test CA), with the real binary: first issuance by
/// TLS-ALPN-01 and by HTTP-01, verified by curl against Pebble's root; renewal while a WebSocket
/// and keep-alive requests stay open; a challenge that cannot succeed; a restart that reuses the
/// account and the certificate. Serialized: each test runs its own Pebble and Ferry.
@Suite(.serialized) struct ACMEEndToEndTests {
    static let names = ["a.ferry.test", "b.ferry.test"]

    /// Ferry with an ACME listener on its HTTPS port and a plain listener, Pebble validating
    /// against `pebbleHTTPPort`/`pebbleTLSPort` (Ferry's own ports, or wrong ones).
    struct Setup {
        let ferry: FerryInstance
        let pebble: PebbleHarness
        let plainPort: Int
        let root: String

        init(
            name: String, challenges: [String], validitySeconds: Int? = nil, wrongPorts: Bool = false,
            state: URL? = nil, pebble existing: PebbleHarness? = nil, extra: String = "",
            externalAccountKeys: [String: String]? = nil, acmeExtra: String = ""
        ) throws {
            let plainPort = try FreePort.pick()
            var started: PebbleHarness? = existing
            let ferry = try FerryInstance(name: name) { directory, httpsPort in
                if started == nil {
                    started = try? PebbleHarness(
                        httpPort: wrongPorts ? (try? FreePort.pick()) ?? 1 : plainPort,
                        tlsPort: wrongPorts ? (try? FreePort.pick()) ?? 1 : httpsPort, validitySeconds: validitySeconds,
                        externalAccountKeys: externalAccountKeys)
                }
                let stateDirectory = (state ?? directory.appendingPathComponent("state")).path
                return """
                    [master]
                    workers = 1
                    control_socket = "\(directory.appendingPathComponent("state").path)/control.sock"
                    state_dir = "\(stateDirectory)"
                    graceful_timeout = "2s"

                    [[listen]]
                    name = "https"
                    address = "127.0.0.1:\(httpsPort)"
                    [listen.tls.acme]
                    directory = "\(started?.directoryURL ?? "https://127.0.0.1:1/dir")"
                    directory_ca = "\(started?.apiCertificatePath ?? "/dev/null")"
                    email = "ops@ferry.test"
                    agree_terms = true
                    challenges = [\(challenges.map { "\"\($0)\"" }.joined(separator: ", "))]
                    retry = "1s"
                    \(acmeExtra)

                    [[listen]]
                    name = "http"
                    address = "127.0.0.1:\(plainPort)"
                    redirect_to_https = true

                    [[route]]
                    path = "/"
                    hosts = ["a.ferry.test", "b.ferry.test"]
                    respond = 200
                    body = "served\\n"
                    \(extra)
                    """
            }
            guard let started else {
                ferry.stop()
                throw E2EError("pebble did not start")
            }
            self.ferry = ferry
            self.pebble = started
            self.plainPort = plainPort
            root = ferry.directory.appendingPathComponent("pebble-root.pem").path
            try started.writeIssuingRoot(to: root)
        }

        func status() throws -> [String: Any] {
            let out = try FerryBinary.run(["status", "--json", "--socket", ferry.controlSocket])
            guard let document = try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any]
            else { throw E2EError("status: \(out.stdout) \(out.stderr)") }
            return document
        }

        /// The ACME listener's certificate row.
        func certificate() throws -> [String: Any]? {
            (try status()["certificates"] as? [[String: Any]])?.first { ($0["listener"] as? String) == "https" }
        }

        /// Polls status until the certificate's source is `acme` (bounded).
        func waitForIssued(timeout: TimeInterval = 60, notAfterOtherThan previous: Double? = nil) throws
            -> [String: Any]
        {
            let deadline = Date().addingTimeInterval(timeout)
            var last: [String: Any]?
            while Date() < deadline {
                last = try certificate()
                if let last, last["source"] as? String == "acme",
                    previous == nil || (last["notAfter"] as? Double) != previous
                {
                    return last
                }
                Thread.sleep(forTimeInterval: 0.25)
            }
            throw E2EError("no ACME certificate in time: \(String(describing: last))\n\(ferry.log())\n\(pebble.log)")
        }

        /// curl, verifying the served chain against Pebble's root for `name`.
        func verifiedGET(_ name: String) throws -> FerryBinary.Output {
            guard let curl = Tool.path("curl") else { throw E2EError("curl is not installed") }
            return try Tool.run(
                curl,
                [
                    "-sS", "--max-time", "10", "--cacert", root, "--resolve", "\(name):\(ferry.httpsPort):127.0.0.1",
                    "https://\(name):\(ferry.httpsPort)/",
                ])
        }

        /// The certificate watch applies new files within a tick or two: polls until curl verifies.
        func waitUntilVerified(_ name: String, timeout: TimeInterval = 10) throws -> FerryBinary.Output {
            let deadline = Date().addingTimeInterval(timeout)
            var out = try verifiedGET(name)
            while out.status != 0 && Date() < deadline {
                Thread.sleep(forTimeInterval: 0.2)
                out = try verifiedGET(name)
            }
            return out
        }

        func stop() {
            ferry.stop()
            pebble.stop()
        }
    }

    static var pebbleAvailable: Bool {
        if Tool.path("pebble") == nil || Tool.path("pebble-challtestsrv") == nil {
            print("skipped: pebble is not installed")
            return false
        }
        return true
    }

    @Test func firstIssuanceWithTLSALPN01() throws {
        guard Self.pebbleAvailable else { return }
        let setup = try Setup(name: "acme-alpn", challenges: ["tls-alpn-01"])
        defer { setup.stop() }
        // Until the CA answers, the temporary self-signed certificate serves (curl refuses it).
        let issued = try setup.waitForIssued()
        #expect(Set(issued["names"] as? [String] ?? []) == Set(Self.names))
        for name in Self.names {
            let out = try setup.waitUntilVerified(name)
            #expect(out.status == 0 && out.stdout == "served\n", "\(name): \(out.stderr)")
        }
        let acme = issued["acme"] as? [String: Any]
        #expect(acme?["state"] as? String == "issued")
        print("issued by tls-alpn-01 in \(acme?["lastIssuanceSeconds"] ?? "?") s")
        // After the order no challenge is pending: acme-tls/1 alone gets no handshake; offered
        // among others it is not a validation (the client gets h2 and the real certificate).
        guard let openssl = Tool.path("openssl") else { return }
        func handshake(_ alpn: String) throws -> String {
            let out = try Tool.run(
                "/bin/sh",
                [
                    "-c",
                    "echo | \(openssl) s_client -connect 127.0.0.1:\(setup.ferry.httpsPort) -servername a.ferry.test -alpn \(alpn) -CAfile \(setup.root) 2>&1",
                ], timeout: 15)
            return out.stdout
        }
        let alone = try handshake("acme-tls/1")
        #expect(alone.contains("no application protocol") || alone.contains("alert"), "\(alone)")
        let among = try handshake("h2,acme-tls/1")
        #expect(among.contains("ALPN protocol: h2") && among.contains("Verify return code: 0 (ok)"), "\(among)")
    }

    @Test func firstIssuanceWithHTTP01() throws {
        guard Self.pebbleAvailable else { return }
        let setup = try Setup(name: "acme-http01", challenges: ["http-01"])
        defer { setup.stop() }
        let issued = try setup.waitForIssued()
        for name in Self.names {
            let out = try setup.waitUntilVerified(name)
            #expect(out.status == 0 && out.stdout == "served\n", "\(name): \(out.stderr)")
        }
        // Pebble fetched the tokens from the redirect listener (200); they are gone afterwards,
        // and nothing but a token names a file.
        let fetched = setup.ferry.log().split(separator: "\n").filter {
            $0.contains("GET /.well-known/acme-challenge/") && $0.contains(" 200 ")
        }
        #expect(fetched.count >= Self.names.count, "\(setup.ferry.log())")  // Pebble may validate more than once
        guard let curl = Tool.path("curl") else { return }
        let token =
            fetched.first.flatMap { line in
                line.split(separator: " ").first { $0.hasPrefix("/.well-known/acme-challenge/") }
            }.map(String.init) ?? "/.well-known/acme-challenge/x"
        for path in [token, "/.well-known/acme-challenge/../../acme/accounts", "/.well-known/acme-challenge/%2e%2e"] {
            let out = try Tool.run(
                curl,
                [
                    "-s", "--path-as-is", "-o", "/dev/null", "-w", "%{http_code}",
                    "http://127.0.0.1:\(setup.plainPort)\(path)",
                ])
            #expect(out.stdout == "404", "\(path)")
        }
        let acme = issued["acme"] as? [String: Any]
        print("issued by http-01 in \(acme?["lastIssuanceSeconds"] ?? "?") s")
    }

    /// Short lifetimes (12 s: renewal at 2/3, about 8 s after issuance): a WebSocket and a
    /// keep-alive connection opened on the first certificate stay up through the renewal, while
    /// new handshakes get the new certificate.
    @Test func renewalDropsNoConnection() throws {
        guard Self.pebbleAvailable, Tool.pythonWebSocketsAvailable() else { return }
        let echo = try Tool.startPythonServer(
            ServeEndToEndTests.scripts.appendingPathComponent("echo_ws_backend.py").path, arguments: { ["\($0)"] })
        defer { echo.process.terminate() }
        let setup = try Setup(
            name: "acme-renew", challenges: ["tls-alpn-01"], validitySeconds: 12,
            extra: """

                [[backend]]
                name = "echo"
                address = "127.0.0.1:\(echo.port)"

                [[route]]
                path = "/ws"
                hosts = ["a.ferry.test", "b.ferry.test"]
                backend = "echo"
                protocol = "websocket"
                """)
        defer { setup.stop() }
        _ = try setup.waitForIssued()
        #expect(try setup.waitUntilVerified("a.ferry.test").status == 0)
        guard let python = Tool.path("python3") else { throw E2EError("python3 is not installed") }
        let out = try Tool.run(
            python,
            [
                ServeEndToEndTests.scripts.appendingPathComponent("acme_renewal_client.py").path,
                "\(setup.ferry.httpsPort)", "a.ferry.test", setup.root, "11",
            ], timeout: 40)
        guard let result = try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any] else {
            throw E2EError("client: \(out.stdout) \(out.stderr)")
        }
        let errors = result["errors"] as? [String] ?? ["?"]
        let held = result["held_serials"] as? [String] ?? []
        let seen = result["new_serials"] as? [String] ?? []
        #expect(errors.isEmpty, "\(errors)")
        #expect((result["echoes"] as? Int ?? 0) > 30 && (result["gets"] as? Int ?? 0) > 30)
        // Renewed: new handshakes saw a second certificate; the held connections kept theirs.
        #expect(seen.count >= 2, "serials seen by new handshakes: \(seen)\n\(setup.ferry.log())")
        #expect(held.count == 2 && held[0] == held[1] && seen.first == held[0])
        #expect(setup.ferry.log().contains("certificate files changed; applying them in place"))
        print(
            "renewal: \(result["echoes"] ?? 0) echoes, \(result["gets"] ?? 0) GETs, serials \(seen), errors \(errors.count)"
        )
    }

    /// A reload points the certificate at a CA whose validation cannot reach Ferry (wrong
    /// ports) and adds a name: the order fails, status says so with Pebble's error, and the
    /// certificate issued before keeps serving.
    @Test func aChallengeThatCannotSucceedIsReportedAndTheCertificateKeepsServing() throws {
        guard Self.pebbleAvailable else { return }
        let setup = try Setup(name: "acme-fail", challenges: ["tls-alpn-01"])
        defer { setup.stop() }
        _ = try setup.waitForIssued()
        #expect(try setup.waitUntilVerified("a.ferry.test").status == 0)
        let unreachable = try PebbleHarness(httpPort: try FreePort.pick(), tlsPort: try FreePort.pick())
        defer { unreachable.stop() }
        var config = try String(contentsOfFile: setup.ferry.configPath, encoding: .utf8)
        config = config.replacing(setup.pebble.directoryURL, with: unreachable.directoryURL)
            .replacing(setup.pebble.apiCertificatePath, with: unreachable.apiCertificatePath)
            .replacing(
                #"hosts = ["a.ferry.test", "b.ferry.test"]"#,
                with: #"hosts = ["a.ferry.test", "b.ferry.test", "c.ferry.test"]"#)
        try config.write(toFile: setup.ferry.configPath, atomically: true, encoding: .utf8)
        kill(setup.ferry.process.processIdentifier, SIGHUP)
        let deadline = Date().addingTimeInterval(30)
        var row: [String: Any]?
        while Date() < deadline {
            row = try setup.certificate()
            if let acme = row?["acme"] as? [String: Any], acme["state"] as? String == "failing",
                acme["lastError"] is String
            {
                break
            }
            Thread.sleep(forTimeInterval: 0.25)
        }
        let acme = row?["acme"] as? [String: Any]
        #expect(acme?["state"] as? String == "failing", "\(String(describing: row))\n\(setup.ferry.log())")
        let error = acme?["lastError"] as? String ?? ""
        #expect(error.contains("tls-alpn-01 for") && error.contains("Failed to connect"), "\(error)")
        #expect(row?["source"] as? String == "acme")
        // The first CA's certificate still serves its names.
        let out = try setup.verifiedGET("a.ferry.test")
        #expect(out.status == 0 && out.stdout == "served\n", "\(out.stderr)")
        let table = try FerryBinary.run(["status", "--socket", setup.ferry.controlSocket]).stdout
        #expect(table.contains("failing"), "\(table)")
        let metrics = try FerryBinary.run(["metrics", "--socket", setup.ferry.controlSocket]).stdout
        #expect(metrics.contains(#"ferry_acme_state{listener="https",state="failing"} 1"#), "\(metrics)")
        #expect(
            metrics.contains(#"ferry_certificate_days_left{listener="https""#) && metrics.contains(#"source="acme""#))
    }

    /// Before the first certificate: a temporary self-signed one for the names serves, and status
    /// says so, with the CA's error while validations fail.
    @Test func untilTheFirstCertificateAStandInServesAndStatusSaysSo() throws {
        guard Self.pebbleAvailable, let curl = Tool.path("curl") else { return }
        let setup = try Setup(name: "acme-awaiting", challenges: ["tls-alpn-01"], wrongPorts: true)
        defer { setup.stop() }
        let deadline = Date().addingTimeInterval(20)
        var row: [String: Any]?
        while Date() < deadline {
            row = try setup.certificate()
            if (row?["acme"] as? [String: Any])?["lastError"] is String { break }
            Thread.sleep(forTimeInterval: 0.25)
        }
        let acme = row?["acme"] as? [String: Any]
        #expect(row?["source"] as? String == "self-signed (awaiting ACME)", "\(String(describing: row))")
        #expect(acme?["state"] as? String == "awaiting")
        #expect((acme?["lastError"] as? String)?.contains("Failed to connect") == true, "\(String(describing: acme))")
        #expect(Set(row?["names"] as? [String] ?? []) == Set(Self.names))
        // The stand-in is served for the names (not trusted: curl -k shows it).
        let out = try Tool.run(
            curl,
            [
                "-sSk", "-v", "--max-time", "10", "--resolve", "b.ferry.test:\(setup.ferry.httpsPort):127.0.0.1",
                "https://b.ferry.test:\(setup.ferry.httpsPort)/",
            ])
        #expect(out.stdout == "served\n")
        #expect(out.stderr.contains("subject: O=Ferry self-signed; CN=a.ferry.test"), "\(out.stderr)")
        #expect(try setup.verifiedGET("b.ferry.test").status != 0)
    }

    /// A CA that binds accounts to customer accounts (RFC 8555 §7.3.4): without the binding the
    /// account is refused and status says why; with `eab_kid`/`eab_hmac_key` it is issued.
    @Test func externalAccountBinding() throws {
        guard Self.pebbleAvailable else { return }
        let keys = ["kid-1": "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"]
        let refused = try Setup(name: "acme-eab-none", challenges: ["tls-alpn-01"], externalAccountKeys: keys)
        defer { refused.stop() }
        let deadline = Date().addingTimeInterval(20)
        var error: String?
        while Date() < deadline {
            error = (try refused.certificate()?["acme"] as? [String: Any])?["lastError"] as? String
            if error != nil { break }
            Thread.sleep(forTimeInterval: 0.25)
        }
        #expect(error?.contains("externalAccountRequired") == true, "\(String(describing: error))")
        let bound = try Setup(
            name: "acme-eab", challenges: ["tls-alpn-01"], externalAccountKeys: keys,
            acmeExtra: #"eab_kid = "kid-1"\#neab_hmac_key = "\#(keys["kid-1"]!)""#)
        defer { bound.stop() }
        _ = try bound.waitForIssued()
        #expect(try bound.waitUntilVerified("a.ferry.test").status == 0)
    }

    /// Restarted with the same state directory, Ferry serves the certificate it has and neither
    /// registers again nor orders.
    @Test func aRestartReusesTheAccountAndTheCertificate() throws {
        guard Self.pebbleAvailable else { return }
        let state = FileManager.default.temporaryDirectory.appendingPathComponent(
            "ferry-acme-state-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: state) }
        let first = try Setup(name: "acme-restart1", challenges: ["tls-alpn-01"], state: state)
        _ = try first.waitForIssued()
        #expect(first.ferry.log().contains("ACME account registered"))
        first.ferry.stop()
        defer { first.pebble.stop() }
        let ordersBefore = first.pebble.log.components(separatedBy: "POST /order-finalize").count
        let second = try Setup(name: "acme-restart2", challenges: ["tls-alpn-01"], state: state, pebble: first.pebble)
        defer { second.ferry.stop() }
        let issued = try second.waitForIssued(timeout: 10)
        #expect(issued["source"] as? String == "acme")
        let out = try second.waitUntilVerified("b.ferry.test")
        #expect(out.status == 0, "\(out.stderr)")
        Thread.sleep(forTimeInterval: 2)
        let log = second.ferry.log()
        #expect(!log.contains("ACME account registered") && !log.contains("ACME certificate installed"), "\(log)")
        #expect(first.pebble.log.components(separatedBy: "POST /order-finalize").count == ordersBefore)
    }
}
