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
