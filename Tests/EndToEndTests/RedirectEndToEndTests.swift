import Foundation
import Testing

/// Issue 17, item 3, with the real binary and curl: a plain-HTTP listener with
/// `redirect_to_https` answers 308 to the same host and target on the TLS port, keeps
/// `/.well-known/acme-challenge/` for ACME, and passes nothing to a route.
@Suite struct RedirectEndToEndTests {
    @Test func aPlainListenerRedirectsEverythingToHTTPS() throws {
        guard let curl = Tool.path("curl") else { throw E2EError("curl is not installed") }
        let plainPort = try FreePort.pick()
        let ferry = try FerryInstance(name: "redirect") { directory, port in
            FerryInstance.preamble(directory, port: port, workers: 1) + """
                [[listen]]
                name = "http"
                address = "127.0.0.1:\(plainPort)"
                redirect_to_https = true

                [[route]]
                path = "/"
                respond = 200
                body = "served over https\\n"
                """
        }
        defer { ferry.stop() }
        try ferry.waitUntilAccepting(port: plainPort, timeout: 10)
        let http = "http://127.0.0.1:\(plainPort)"
        func head(_ path: String, _ extra: [String] = []) throws -> (status: String, location: String?) {
            let out = try Tool.run(
                curl, ["-sS", "--max-time", "10", "-o", "/dev/null", "-D", "-"] + extra + [http + path]
            )
            .stdout
            let status = out.split(separator: " ").dropFirst().first.map(String.init) ?? ""
            let location = out.split(separator: "\r\n").first { $0.lowercased().hasPrefix("location:") }
                .map { $0.dropFirst("location:".count).trimmingCharacters(in: .whitespaces) }
            return (status, location)
        }
        let tls = ferry.httpsPort
        let plain = try head("/x?y=1&z")
        #expect(plain.status == "308")
        #expect(plain.location == "https://127.0.0.1:\(tls)/x?y=1&z")
        let named = try head("/a/b", ["-H", "Host: Example.ORG:80"])
        #expect(named.location == "https://example.org:\(tls)/a/b")
        // Nothing under /.well-known/ reaches the route; ACME's path is kept for its tokens.
        #expect(try head("/.well-known/acme-challenge/token123").status == "404")
        let other = try head("/.well-known/security.txt")
        #expect(other.status == "308" && other.location == "https://127.0.0.1:\(tls)/.well-known/security.txt")
        #expect(try head("/", ["-H", "Host: bad/host"]).status == "400")
        // Followed, the redirect ends on the route over HTTPS.
        let followed = try Tool.run(curl, ["-sSk", "-L", "--max-time", "10", http + "/x"]).stdout
        #expect(followed == "served over https\n")
        #expect(ferry.log().contains("\"GET /x?y=1&z HTTP/1.1\" 308"))
    }
}
