/// Host names as routes and certificates use them: a request's `Host` reduced to the name it
/// designates, route host patterns (`example.org`, `*.example.org`) and which certificate of a
/// listener a name selects by SNI.
public enum HostName {
    /// The name a `Host` header (or an absolute-form authority) designates: lowercased, without
    /// port or trailing dot; an IPv6 literal keeps its brackets. nil when there is no name in it
    /// (empty, or a malformed bracket).
    public static func normalize(_ raw: some StringProtocol) -> String? {
        var host = Substring(raw)
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return nil }
            host = host[...close]
        } else if let colon = host.lastIndex(of: ":") {
            host = host[..<colon]
        }
        while host.hasSuffix(".") { host = host.dropLast() }
        guard !host.isEmpty else { return nil }
        return host.lowercased()
    }

    /// A route host pattern is a name of letters, digits, `-`, `_` and dots (lowercase once
    /// loaded), or `*.` followed by one; an IPv4 or bracketed IPv6 literal is a name too.
    public static func isValidPattern(_ pattern: String) -> Bool {
        if pattern.hasPrefix("[") && pattern.hasSuffix("]") && pattern.count > 2 {
            return pattern.dropFirst().dropLast().allSatisfy { $0.isHexDigit || $0 == ":" || $0 == "." }
        }
        let name = pattern.hasPrefix("*.") ? pattern.dropFirst(2) : Substring(pattern)
        guard !name.isEmpty, !name.hasPrefix("."), !name.hasSuffix("."), !name.contains("..") else { return false }
        return name.allSatisfy { ($0.isASCII && ($0.isLetter || $0.isNumber)) || $0 == "-" || $0 == "_" || $0 == "." }
    }

    /// A route pattern: an exact name, or `*.suffix` for any name ending in `.suffix` (any depth,
    /// as nginx's `server_name *.example.org`; not `suffix` itself).
    public static func routeMatches(pattern: String, host: String) -> Bool {
        guard pattern.hasPrefix("*.") else { return pattern == host }
        let suffix = pattern.dropFirst(1)  // ".example.org"
        return host.count > suffix.count && host.hasSuffix(suffix)
    }

    /// A certificate's SNI pattern: exact, or `*.suffix` covering exactly one more label, as TLS
    /// wildcards do (and as `TLSContext` selects certificates).
    public static func certificateMatches(pattern: String, name: String) -> Bool {
        let pattern = pattern.lowercased()
        if pattern == name { return true }
        guard pattern.hasPrefix("*."), let dot = name.firstIndex(of: ".") else { return false }
        return name[name.index(after: dot)...] == pattern.dropFirst(2)
    }
}

/// Which certificate of a TLS listener a server name selects: the first certificate whose
/// `server_names` match among the second and later ones, else the first (the default), exactly as
/// the TLS handshake chooses. Two names served by different certificates are different sites for
/// the 421 rule.
public struct CertificateSelector: Sendable, Equatable {
    let serverNames: [[String]]

    public init(_ tls: TLSSettings) {
        serverNames = tls.certificates.map(\.serverNames)
    }

    /// True when the listener has one certificate: every name selects it.
    public var isTrivial: Bool { serverNames.count < 2 }

    public func index(forServerName name: String) -> Int {
        for (index, patterns) in serverNames.enumerated().dropFirst()
        where patterns.contains(where: { HostName.certificateMatches(pattern: $0, name: name) }) {
            return index
        }
        return 0
    }
}
