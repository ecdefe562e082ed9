import FerryConfig
import Testing

@testable import FerryProxy

/// Issue 14, item 1: the request's host picks a site (exact, then longest wildcard, then the
/// default site); inside it the longest prefix wins; a site's miss does not fall through.
@Suite struct HostRoutingTests {
    let router = Router(routes: [
        RouteConfiguration(path: "/", action: .proxy(backend: "default")),
        RouteConfiguration(path: "/shared/", action: .proxy(backend: "default-shared")),
        RouteConfiguration(path: "/", action: .proxy(backend: "a"), hosts: ["a.example"]),
        RouteConfiguration(path: "/api/", action: .proxy(backend: "a-api"), hosts: ["a.example", "*.a.example"]),
        RouteConfiguration(path: "/", action: .proxy(backend: "wild"), hosts: ["*.a.example"]),
        RouteConfiguration(path: "/", action: .proxy(backend: "deep"), hosts: ["*.x.a.example"]),
        RouteConfiguration(path: "/only/", action: .proxy(backend: "b"), hosts: ["b.example"]),
    ])

    func backend(_ uri: String, _ host: String?) -> String? {
        if case .matched(let match) = router.route(uri: uri, host: host) { return match.route.backendName }
        return nil
    }

    @Test func exactThenLongestWildcardThenDefault() {
        #expect(backend("/page", "a.example") == "a")
        #expect(backend("/api/v1", "a.example") == "a-api")
        #expect(backend("/page", "w.a.example") == "wild")
        #expect(backend("/api/v1", "w.a.example") == "a-api")
        #expect(backend("/page", "y.x.a.example") == "deep")
        #expect(backend("/page", "q.w.a.example") == "wild")  // a wildcard covers any depth
        #expect(backend("/page", "other.example") == "default")
        #expect(backend("/shared/x", nil) == "default-shared")
        #expect(backend("/page", "example") == "default")  // "*.a.example" is not "a.example" itself
    }

    @Test func aSitesMissIsNotFoundNotTheDefaultSite() {
        #expect(router.route(uri: "/elsewhere", host: "b.example") == .notFound)
        #expect(backend("/only/x", "b.example") == "b")
        // The default site's /shared/ is not reachable through a.example, which has its own "/".
        #expect(backend("/shared/x", "a.example") == "a")
    }

    @Test func withoutADefaultSiteAnUnknownHostIsNotFound() {
        let router = Router(routes: [RouteConfiguration(path: "/", action: .proxy(backend: "a"), hosts: ["a.example"])])
        #expect(router.route(uri: "/", host: "b.example") == .notFound)
        #expect(router.route(uri: "/", host: nil) == .notFound)
        #expect(router.hasSites)
        #expect(!Router(routes: [RouteConfiguration(path: "/", action: .proxy(backend: "a"))]).hasSites)
    }

    @Test func hostHeadersAreNormalized() {
        #expect(HostName.normalize("Example.ORG") == "example.org")
        #expect(HostName.normalize("example.org:8443") == "example.org")
        #expect(HostName.normalize("example.org.") == "example.org")
        #expect(HostName.normalize("example.org.:443") == "example.org")
        #expect(HostName.normalize("[::1]:8443") == "[::1]")
        #expect(HostName.normalize("[::1") == nil)
        #expect(HostName.normalize("") == nil)
        #expect(HostName.normalize(":443") == nil)
    }

    @Test func hostPatternsAreValidated() {
        for valid in ["example.org", "*.example.org", "a-b.c_d.example", "127.0.0.1", "[::1]", "localhost"] {
            #expect(HostName.isValidPattern(valid), "\(valid)")
        }
        for invalid in [
            "", "*", "*.", "a.*.org", "example.org:443", "https://example.org", "a..b", ".a", "a/b", "é.org",
        ] {
            #expect(!HostName.isValidPattern(invalid), "\(invalid)")
        }
    }

    /// The same choice the TLS handshake makes: first certificate by default, a TLS wildcard covers
    /// one label.
    @Test func certificateSelectionFollowsTheHandshakesRules() {
        let tls = TLSSettings(certificates: [
            CertificateConfiguration(certificatePath: "d", keyPath: "d"),
            CertificateConfiguration(certificatePath: "a", keyPath: "a", serverNames: ["a.example", "*.a.example"]),
            CertificateConfiguration(certificatePath: "b", keyPath: "b", serverNames: ["b.example"]),
        ])
        let selector = CertificateSelector(tls)
        #expect(selector.index(forServerName: "a.example") == 1)
        #expect(selector.index(forServerName: "w.a.example") == 1)
        #expect(selector.index(forServerName: "q.w.a.example") == 0)
        #expect(selector.index(forServerName: "b.example") == 2)
        #expect(selector.index(forServerName: "other") == 0)
        #expect(!selector.isTrivial)
    }
}
