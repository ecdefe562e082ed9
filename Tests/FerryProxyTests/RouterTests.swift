import FerryConfig
import Testing

@testable import FerryProxy

@Suite struct RouterTests {
    let routes = [
        RouteConfiguration(path: "/", action: .proxy(backend: "files")),
        RouteConfiguration(path: "/tts-ws/tts", action: .proxy(backend: "tts"), stripPrefix: "/tts-ws"),
        RouteConfiguration(path: "/tts-ws/tts/wav/", action: .proxy(backend: "files"), stripPrefix: "/tts-ws"),
        RouteConfiguration(path: "/admin", action: .respond(status: 403, body: nil)),
        RouteConfiguration(path: "/api/v1", action: .proxy(backend: "api"), rewrite: "/v2"),
    ]

    func match(_ uri: String) -> Router.Match? {
        if case .matched(let match) = Router(routes: routes).route(uri: uri) { return match }
        return nil
    }

    @Test func longestPrefixWinsWhateverTheOrder() {
        #expect(match("/tts-ws/tts/wav/a.wav")?.route.path == "/tts-ws/tts/wav/")
        #expect(match("/tts-ws/tts")?.route.path == "/tts-ws/tts")
        #expect(match("/index.html")?.route.path == "/")
        let reversed = Router(routes: routes.reversed())
        guard case .matched(let m) = reversed.route(uri: "/tts-ws/tts/wav/a.wav") else {
            Issue.record("no match")
            return
        }
        #expect(m.route.path == "/tts-ws/tts/wav/")
    }

    @Test func stripPrefixAndRewrite() {
        #expect(match("/tts-ws/tts/wav/a.wav?x=1")?.upstreamURI == "/tts/wav/a.wav?x=1")
        #expect(match("/tts-ws/tts")?.upstreamURI == "/tts")
        #expect(match("/api/v1/users")?.upstreamURI == "/v2/users")
        #expect(match("/index.html")?.upstreamURI == "/index.html")
    }

    @Test func dotSegmentsCannotEscapeAPrefix() {
        #expect(match("/tts-ws/../admin")?.route.path == "/admin")
        #expect(match("/tts-ws/tts/wav/../../../admin")?.route.path == "/admin")
        // Encoded dot segments are dot segments: /tts-ws/tts/wav/../../x is /tts-ws/x.
        #expect(match("/tts-ws/tts/wav/%2e%2e/%2E%2E/x")?.route.path == "/")
        #expect(match("/tts-ws/tts/wav/%2e%2e/%2E%2E/x")?.upstreamURI == "/tts-ws/x")
        #expect(match("/tts-ws/tts/wav/%2e%2e/y")?.route.path == "/tts-ws/tts")
        #expect(match("/a/./b/../../tts-ws/tts")?.route.path == "/tts-ws/tts")
    }

    @Test func doubleSlashesCollapse() {
        #expect(match("//tts-ws//tts/wav//a.wav")?.route.path == "/tts-ws/tts/wav/")
        #expect(match("//admin")?.route.path == "/admin")
    }

    @Test func unreservedEscapesAreDecodedReservedOnesKept() {
        #expect(Router.normalize("/%74ts-ws/%7euser") == "/tts-ws/~user")
        #expect(Router.normalize("/a%2fb") == "/a%2Fb")
        #expect(match("/%61dmin")?.route.path == "/admin")
    }

    @Test func malformedTargetsAreBadRequests() {
        let router = Router(routes: routes)
        #expect(router.route(uri: "/a%00b") == .badRequest)
        #expect(router.route(uri: "/a%zz") == .badRequest)
        #expect(router.route(uri: "http://example.com/") == .badRequest)
        #expect(router.route(uri: "*") == .badRequest)
    }

    @Test func noRouteIsNotFound() {
        let router = Router(routes: [RouteConfiguration(path: "/only", action: .proxy(backend: "x"))])
        #expect(router.route(uri: "/other") == .notFound)
    }

    @Test func trailingDotSegmentKeepsTheDirectory() {
        #expect(Router.normalize("/a/b/..") == "/a/")
        #expect(Router.normalize("/a/.") == "/a/")
        #expect(Router.normalize("/..") == "/")
    }

    /// The fast path (`isNormalized`) must never accept a path that `normalize` would change or
    /// refuse: checked on every path of up to five pieces over an alphabet of awkward pieces.
    @Test func fastPathAgreesWithNormalization() {
        let pieces = ["/", "a", ".", "..", "%2e", "%41", "%", "\u{7f}", "\u{01}", "é", "~", "?x", "#f"]
        var paths: [String] = [""]
        var checked = 0
        for _ in 0..<5 {
            paths = paths.flatMap { prefix in pieces.map { prefix + $0 } }
            for path in paths {
                let (raw, _) = Router.split(path)
                if Router.isNormalized(raw) {
                    #expect(Router.normalize(raw) == String(raw), "fast path accepted \(path.debugDescription)")
                    checked += 1
                }
            }
        }
        #expect(checked > 1000)
    }

    @Test func splitSeparatesPathQueryAndFragment() {
        #expect(Router.split("/a?b=1#c") == ("/a", "b=1"))
        #expect(Router.split("/a#c?d") == ("/a", nil))
        #expect(Router.split("/a?") == ("/a", ""))
        #expect(Router.split("/a") == ("/a", nil))
        let match = Router(routes: routes).route(uri: "/tts-ws/tts/wav/x.wav?v=2#frag")
        guard case .matched(let found) = match else {
            Issue.record("no match")
            return
        }
        #expect(found.upstreamURI == "/tts/wav/x.wav?v=2")
    }
}

/// Paths that a percent-decoding backend would read differently from Ferry (issue 21, item 1):
/// `/forbidden` is answered 403 by Ferry, `/` and `/files/` are proxied, `/raw/` allows `%2F`.
@Suite struct EncodedPathTests {
    let router = Router(routes: [
        RouteConfiguration(path: "/", action: .proxy(backend: "app")),
        RouteConfiguration(path: "/forbidden", action: .respond(status: 403, body: nil)),
        RouteConfiguration(path: "/files/", action: .proxy(backend: "files")),
        RouteConfiguration(path: "/raw/", action: .proxy(backend: "app"), allowEncodedSlashes: true),
        RouteConfiguration(path: "/raw/private", action: .respond(status: 403, body: nil)),
    ])

    func isRefused(_ uri: String) -> Bool {
        if case .unsafePath = router.route(uri: uri) { return true }
        return false
    }

    /// Each of these climbs above the root or past `/forbidden` once decoded: 400 on every route.
    @Test(arguments: [
        "/a/..%2F..%2Fetc/passwd", "/a/..%2f..%2fetc/passwd", "/x/..%2Fforbidden", "/x/%2e%2e%2fforbidden",
        "/x/%2E%2E%2Fforbidden", "/x/..%5Cforbidden", "/x/..%5cforbidden", "/x/..\\forbidden",
        "/x/..%252Fforbidden", "/x/%252e%252e%252fforbidden", "/x/%25252e%25252e/forbidden",
        "/x/%C0%AE%C0%AE/forbidden", "/x/%C0%AE%C0%AE%C0%AFforbidden", "/x/%E0%80%AE%E0%80%AE/forbidden",
        "/x/.%2e%2Fforbidden", "/files/..%2F..%2Fsecret", "/raw/..%2F..%2Fforbidden", "/raw/a%2F..%2F..%2Fforbidden",
        "/raw/%2e%2e%2Fforbidden", "/raw/x%2500y",
    ])
    func climbingPathsAreRefused(uri: String) {
        #expect(isRefused(uri), "\(uri) was \(router.route(uri: uri))")
    }

    /// An encoded slash is refused by default, wherever it is and however it is spelled.
    @Test(arguments: ["/a%2Fb", "/forbidden%2Fx", "/x%2fforbidden", "/files/a%5Cb", "/files/a\\b", "/a%252Fb"])
    func encodedSlashesAreRefusedByDefault(uri: String) {
        #expect(isRefused(uri), "\(uri) was \(router.route(uri: uri))")
    }

    @Test func aRouteCanAllowEncodedSlashes() {
        guard case .matched(let match) = router.route(uri: "/raw/a%2Fb%5Cc?x=1") else {
            Issue.record("refused: \(router.route(uri: "/raw/a%2Fb%5Cc?x=1"))")
            return
        }
        #expect(match.route.path == "/raw/")
        #expect(match.upstreamURI == "/raw/a%2Fb%5Cc?x=1")
    }

    /// `/raw/private` (403) stays unreachable through the route that allows encoded slashes.
    @Test func anAllowedEncodedSlashCannotLeaveItsRoute() {
        // Routed as sent to /raw/private, which does not allow %2F.
        #expect(isRefused("/raw/%70rivate%2Fx"))
        // Routed as sent to /raw/, but to /raw/private once decoded twice.
        #expect(isRefused("/raw/privat%2565%2Fx"))
        #expect(isRefused("/raw%2Fprivate"))
        guard case .matched(let match) = router.route(uri: "/raw/public%2Fx") else {
            Issue.record("refused: \(router.route(uri: "/raw/public%2Fx"))")
            return
        }
        #expect(match.route.path == "/raw/")
    }

    /// Escapes that decode to nothing dangerous still pass, and most paths never reach the check.
    @Test(arguments: ["/a%20b", "/caf%C3%A9", "/a%3Bb", "/files/x%2B%2B.wav", "/a/b..c/%2e%2e%2e", "/%E9t%E9"])
    func harmlessEscapesPass(uri: String) {
        guard case .matched = router.route(uri: uri) else {
            Issue.record("\(uri) was \(router.route(uri: uri))")
            return
        }
    }
}
