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
            state: URL? = nil, pebble existing: PebbleHarness? = nil
        ) throws {
            let plainPort = try FreePort.pick()
            var started: PebbleHarness? = existing
            let ferry = try FerryInstance(name: name) { directory, httpsPort in
                if started == nil {
                    started = try? PebbleHarness(
                        httpPort: wrongPorts ? (try? FreePort.pick()) ?? 1 : plainPort,
                        tlsPort: wrongPorts ? (try? FreePort.pick()) ?? 1 : httpsPort, validitySeconds: validitySeconds)
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

                    [[listen]]
                    name = "http"
                    address = "127.0.0.1:\(plainPort)"
                    redirect_to_https = true

                    [[route]]
                    path = "/"
                    hosts = ["a.ferry.test", "b.ferry.test"]
                    respond = 200
                    body = "served\\n"
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
    }
}
