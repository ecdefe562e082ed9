import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Issue 14, item 1, with the real binary and curl: two sites with their own certificates chosen by
/// SNI, a wildcard site, the default site, and 421 for a Host that another certificate serves.
@Suite struct SitesEndToEndTests {
    /// A self-signed certificate for `names` (the first is the subject) in `directory`.
    static func certificate(_ name: String, _ names: [String], in directory: URL) throws -> (cert: String, key: String)
    {
        guard let openssl = Tool.path("openssl") else { throw E2EError("openssl is not installed") }
        let cert = directory.appendingPathComponent("\(name).crt").path
        let key = directory.appendingPathComponent("\(name).key").path
        let result = try Tool.run(
            openssl,
            [
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
                "-out", cert, "-days", "2", "-subj", "/CN=\(names[0])",
                "-addext", "subjectAltName=" + names.map { "DNS:\($0)" }.joined(separator: ","),
            ])
        guard result.status == 0 else { throw E2EError("openssl req failed: \(result.stderr)") }
        return (cert, key)
    }

    @Test func hostsPickTheirSiteAndCertificateAndAForeignHostIsMisdirected() throws {
        guard let curl = Tool.path("curl") else { throw E2EError("curl is not installed") }
        var certificates: [String: (cert: String, key: String)] = [:]
        let ferry = try FerryInstance(name: "sites") { directory, port in
            certificates["a"] = try? Self.certificate("a", ["a.example"], in: directory)
            certificates["b"] = try? Self.certificate("b", ["b.example", "*.b.example"], in: directory)
            return FerryInstance.preamble(directory, port: port, workers: 1) + """
                [[listen.tls.sni]]
                certificate = "\(certificates["a"]?.cert ?? "")"
                key = "\(certificates["a"]?.key ?? "")"
                server_names = ["a.example"]
                [[listen.tls.sni]]
                certificate = "\(certificates["b"]?.cert ?? "")"
                key = "\(certificates["b"]?.key ?? "")"
                server_names = ["b.example", "*.b.example"]

                [[route]]
                path = "/"
                respond = 200
                body = "default site\\n"

                [[route]]
                path = "/"
                hosts = ["a.example"]
                respond = 200
                body = "site a\\n"

                [[route]]
                path = "/"
                hosts = ["b.example"]
                respond = 200
                body = "site b\\n"

                [[route]]
                path = "/"
                hosts = ["*.b.example"]
                respond = 200
                body = "any b subdomain\\n"

                [[route]]
                path = "/private/"
                hosts = ["*.b.example"]
                respond = 403
                """
        }
        defer { ferry.stop() }
        let port = ferry.httpsPort
        /// curl with SNI `name` (verified against `ca`, or not), optionally another Host header.
        func get(_ name: String, ca: String?, host: String? = nil, path: String = "/") throws -> (Int32, String) {
            var arguments = ["-sS", "--max-time", "10", "-w", "%{http_code}", "--resolve", "\(name):\(port):127.0.0.1"]
            arguments += ca.map { ["--cacert", $0] } ?? ["-k"]
            if let host { arguments += ["-H", "Host: \(host)"] }
            let result = try Tool.run(curl, arguments + ["https://\(name):\(port)\(path)"])
            return (result.status, result.stdout)
        }
        // Each site answers with its own certificate, verified by curl against that certificate.
        #expect(try get("a.example", ca: certificates["a"]?.cert) == (0, "site a\n200"))
        #expect(try get("b.example", ca: certificates["b"]?.cert) == (0, "site b\n200"))
        #expect(try get("x.b.example", ca: certificates["b"]?.cert) == (0, "any b subdomain\n200"))
        #expect(try get("x.b.example", ca: certificates["b"]?.cert, path: "/private/k") == (0, "403"))
        #expect(try get("localhost", ca: ferry.certificatePath) == (0, "default site\n200"))
        // An unknown host on the default certificate: the default site.
        #expect(try get("localhost", ca: ferry.certificatePath, host: "unknown.example") == (0, "default site\n200"))
        // SNI a.example, Host b.example (another certificate): 421, not site b.
        let fronted = try get("a.example", ca: certificates["a"]?.cert, host: "b.example")
        #expect(fronted.1.hasSuffix("421"), "\(fronted)")
        #expect(!fronted.1.contains("site b"))
        // SNI localhost (default certificate), Host a.example: also another certificate's site.
        #expect(try get("localhost", ca: ferry.certificatePath, host: "a.example:\(port)").1.hasSuffix("421"))
        // Same certificate, another name: not misdirected (b.example and x.b.example share one).
        #expect(try get("x.b.example", ca: certificates["b"]?.cert, host: "B.Example.") == (0, "site b\n200"))
    }
}
