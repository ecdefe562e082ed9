public import FerryConfig

/// Host, then longest-prefix routing on a normalized path, independent of the order routes appear
/// in the file.
///
/// The host selects a site: the routes naming it exactly, else those of the longest `*.` wildcard
/// covering it, else the routes without `hosts` (the default site). Inside a site the longest prefix
/// wins; a site's miss is a 404, not a fall-through to another site (as nginx's server blocks).
///
/// Normalization happens before matching so that `/tts-ws/../admin` is matched as `/admin` and
/// `//tts-ws` as `/tts-ws`: a request cannot escape a prefix by spelling its path differently.
public struct Router: Sendable {
    public struct Match: Sendable, Equatable {
        public var route: RouteConfiguration
        /// Index of the route in the configuration (stats are kept per route).
        public var index: Int
        /// The normalized path plus the query, as the backend should see it (after strip/rewrite).
        public var upstreamURI: String
    }

    public enum Outcome: Sendable, Equatable {
        case matched(Match)
        case notFound
        /// The request target is not an origin-form path that can be normalized safely.
        case badRequest
        /// The path is well-formed but would mean something else to a backend that percent-decodes
        /// it (see `DecodedPathCheck`): answered 400 with the reason.
        case unsafePath(String)
    }

    typealias Site = [(index: Int, route: RouteConfiguration)]

    /// Each site's routes sorted by descending path length, so the first prefix that matches is the
    /// longest.
    private let exactSites: [String: Site]
    /// `*.suffix` patterns, longest first.
    private let wildcardSites: [(pattern: String, routes: Site)]
    private let defaultSite: Site

    public init(routes: [RouteConfiguration]) {
        var exact: [String: Site] = [:]
        var wildcard: [String: Site] = [:]
        var fallback: Site = []
        for (index, route) in routes.enumerated() {
            if route.hosts.isEmpty { fallback.append((index, route)) }
            for host in route.hosts {
                if host.hasPrefix("*.") {
                    wildcard[host, default: []].append((index, route))
                } else {
                    exact[host, default: []].append((index, route))
                }
            }
        }
        func sorted(_ site: Site) -> Site { site.sorted { $0.route.path.utf8.count > $1.route.path.utf8.count } }
        exactSites = exact.mapValues(sorted)
        wildcardSites = wildcard.map { ($0.key, sorted($0.value)) }.sorted { $0.pattern.count > $1.pattern.count }
        defaultSite = sorted(fallback)
    }

    /// Whether any route names a host (else the host need not be looked at).
    public var hasSites: Bool { !exactSites.isEmpty || !wildcardSites.isEmpty }

    func site(forHost host: String?) -> Site {
        guard let host else { return defaultSite }
        if let site = exactSites[host] { return site }
        return wildcardSites.first { HostName.routeMatches(pattern: $0.pattern, host: host) }?.routes ?? defaultSite
    }

    /// - Parameter host: the request's host, normalized (`HostName.normalize`); nil for none.
    public func route(uri: String, host: String? = nil) -> Outcome {
        let (rawPath, query) = Self.split(uri)
        let fast = Self.isNormalized(rawPath)
        guard let path = fast ? String(rawPath) : Self.normalize(rawPath) else { return .badRequest }
        let routes = site(forHost: host)
        guard let (index, route) = Self.longestMatch(path.utf8, in: routes) else { return .notFound }
        // The fast path has no `%` and no `\`: nothing a backend could decode differently.
        if !fast, DecodedPathCheck.needsCheck(path) {
            // Encoded separators, dot segments and overlong forms that a decoding backend would act
            // on: refused, unless the route allows encoded slashes and the decoded path routes to
            // the same route (else `/public%2F..%2Fadmin`-like paths could leave their prefix).
            let check = DecodedPathCheck(normalizedPath: path)
            if case .refused(let reason) = check.verdict { return .unsafePath(reason) }
            if check.hasEncodedSeparator && !route.allowEncodedSlashes {
                return .unsafePath(
                    "encoded '/' or '\\' in the path (allow_encoded_slashes = true on the route permits it)")
            }
            if Self.longestMatch(check.decodedPath, in: routes)?.index != index {
                return .unsafePath("path routes elsewhere once percent-decoded")
            }
        }
        var upstreamPath = path
        if let strip = route.stripPrefix, path.hasPrefix(strip) {
            upstreamPath = String(path.dropFirst(strip.utf8.count))
        } else if let rewrite = route.rewrite {
            upstreamPath = rewrite + String(path.dropFirst(route.path.utf8.count))
        }
        if !upstreamPath.hasPrefix("/") { upstreamPath = "/" + upstreamPath }
        let upstreamURI = query.map { "\(upstreamPath)?\($0)" } ?? upstreamPath
        return .matched(Match(route: route, index: index, upstreamURI: upstreamURI))
    }

    /// The longest route prefix of `path` (byte-wise, as nginx and Apache match prefixes).
    private static func longestMatch(_ path: some Collection<UInt8>, in routes: Site) -> (
        index: Int, route: RouteConfiguration
    )? {
        routes.first { path.starts(with: $0.route.path.utf8) }
    }

    static func split(_ uri: String) -> (path: Substring, query: Substring?) {
        let target = uri[..<(uri.utf8.firstIndex(of: UInt8(ascii: "#")) ?? uri.endIndex)]
        guard let mark = target.utf8.firstIndex(of: UInt8(ascii: "?")) else { return (target, nil) }
        return (target[..<mark], target[target.utf8.index(after: mark)...])
    }

    /// True when `normalize` would return the path unchanged and no decoding could change it: it
    /// starts with `/` and has no escape, no `\`, no control character, no empty segment and no
    /// segment starting with a dot. Most requests take this path: one scan, no allocation.
    static func isNormalized(_ rawPath: Substring) -> Bool {
        var previous: UInt8 = 0
        for byte in rawPath.utf8 {
            if byte < 0x20 || byte >= 0x7F || byte == UInt8(ascii: "%") || byte == UInt8(ascii: "\\") { return false }
            if previous == UInt8(ascii: "/") && (byte == UInt8(ascii: "/") || byte == UInt8(ascii: ".")) {
                return false
            }
            if previous == 0 && byte != UInt8(ascii: "/") { return false }
            previous = byte
        }
        return previous != 0
    }

    /// Decodes percent-encoded *unreserved* characters (RFC 3986 §6.2.2.2), removes dot segments
    /// (§5.2.4) and collapses empty segments. Encoded `/`, `.`-segments spelled `%2e%2e` and NUL are
    /// handled so they cannot climb out of a prefix; nil for targets that are not origin-form or
    /// contain malformed escapes, control characters or NUL.
    public static func normalize(_ rawPath: Substring) -> String? {
        guard rawPath.hasPrefix("/") else { return nil }
        var decoded: [UInt8] = []
        decoded.reserveCapacity(rawPath.utf8.count)
        var bytes = rawPath.utf8.makeIterator()
        while let byte = bytes.next() {
            if byte < 0x20 || byte == 0x7F { return nil }
            guard byte == UInt8(ascii: "%") else {
                decoded.append(byte)
                continue
            }
            guard let high = bytes.next().flatMap(hexValue), let low = bytes.next().flatMap(hexValue) else {
                return nil
            }
            let value = high << 4 | low
            if value == 0 { return nil }
            if isUnreserved(value) {
                decoded.append(value)
            } else {
                // Reserved characters stay encoded (uppercase hex, as RFC 3986 recommends).
                decoded.append(UInt8(ascii: "%"))
                decoded.append(hexDigit(value >> 4))
                decoded.append(hexDigit(value & 0xF))
            }
        }
        var output: [Substring] = []
        let text = String(decoding: decoded, as: UTF8.self)
        let segments = text.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        for (offset, segment) in segments.enumerated() {
            let isLast = offset == segments.count - 1
            switch segment {
            case ".":
                if isLast { output.append("") }
            case "..":
                _ = output.popLast()
                if isLast { output.append("") }
            case "":
                if isLast { output.append("") }
            default:
                output.append(segment)
            }
        }
        return "/" + output.joined(separator: "/")
    }

    private static func isUnreserved(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
            UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    private static func hexDigit(_ value: UInt8) -> UInt8 {
        value < 10 ? UInt8(ascii: "0") + value : UInt8(ascii: "A") + value - 10
    }
}
