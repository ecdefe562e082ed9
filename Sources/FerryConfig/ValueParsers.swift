#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Parsers for the string forms the configuration uses: durations, sizes, addresses.
/// Each returns nil or a reason; the loader turns reasons into diagnostics with positions.
public enum ConfigValue {
    /// "30s", "500ms", "2m", "1h", "1.5s", "0s". A bare number is refused: the unit is never implied.
    public static func duration(_ text: String) -> Result<Duration, ParseFailure> {
        let units: [(String, Double)] = [("ms", 1e-3), ("us", 1e-6), ("s", 1), ("m", 60), ("h", 3600)]
        for (unit, scale) in units where text.hasSuffix(unit) {
            let number = text.dropLast(unit.count)
            guard !number.isEmpty, let value = Double(number), value >= 0, value.isFinite else { break }
            let nanoseconds = (value * scale * 1e9).rounded()
            guard nanoseconds < 1e18 else { return .failure(ParseFailure("'\(text)' is too long a duration")) }
            return .success(.nanoseconds(Int64(nanoseconds)))
        }
        return .failure(
            ParseFailure("'\(text)' is not a duration; write a number and a unit: \"500ms\", \"30s\", \"2m\", \"1h\""))
    }

    /// "16KiB", "1MiB", "2GiB", "512B", "64KB" (decimal), or a plain number of bytes.
    public static func size(_ text: String) -> Result<Int, ParseFailure> {
        let units: [(String, Int)] = [
            ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("KB", 1000), ("MB", 1_000_000),
            ("GB", 1_000_000_000), ("k", 1 << 10), ("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30), ("B", 1),
        ]
        let trimmed = text.replacingSpaces()
        if let value = Int(trimmed), value >= 0 { return .success(value) }
        for (unit, scale) in units where trimmed.hasSuffix(unit) {
            guard let value = Int(trimmed.dropLast(unit.count)), value >= 0 else { break }
            let (product, overflow) = value.multipliedReportingOverflow(by: scale)
            guard !overflow else { break }
            return .success(product)
        }
        return .failure(
            ParseFailure("'\(text)' is not a size; write bytes or a number with a unit: \"16KiB\", \"1MiB\""))
    }

    /// `host:port` with a numeric IPv4 address, `[v6]:port`, or `systemd:NAME`.
    public static func listenAddress(_ text: String) -> Result<ListenAddress, ParseFailure> {
        if text.hasPrefix("systemd:") {
            let name = String(text.dropFirst("systemd:".count))
            guard !name.isEmpty, name.count <= 255, !name.contains(":") else {
                return .failure(ParseFailure("'\(text)': systemd:NAME needs the socket unit's FileDescriptorName"))
            }
            return .success(.systemd(name: name))
        }
        switch hostAndPort(text, allowZeroPort: true) {
        case .failure(let failure):
            return .failure(failure)
        case .success(let (host, port)):
            guard isNumericIPv4(host) || isNumericIPv6(host) else {
                return .failure(
                    ParseFailure(
                        "'\(host)' is not a numeric IP address; listen on e.g. \"0.0.0.0:443\", \"[::]:443\" or \"systemd:https\""
                    ))
            }
            return .success(.inet(host: host, port: port))
        }
    }

    /// `host:port` (host name or numeric address), `[v6]:port`, or `unix:/absolute/path`.
    public static func backendAddress(_ text: String) -> Result<BackendAddress, ParseFailure> {
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst("unix:".count))
            guard path.hasPrefix("/") else {
                return .failure(
                    ParseFailure("'\(text)': a Unix socket address needs an absolute path, e.g. \"unix:/run/app.sock\"")
                )
            }
            guard path.utf8.count < 108 else {
                return .failure(ParseFailure("'\(text)': a Unix socket path must be shorter than 108 bytes"))
            }
            return .success(.unix(path: path))
        }
        switch hostAndPort(text, allowZeroPort: false) {
        case .failure(let failure): return .failure(failure)
        case .success(let (host, port)):
            let validName = host.allSatisfy { $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == ":" }
            guard validName else { return .failure(ParseFailure("'\(host)' is not a host name or IP address")) }
            return .success(.inet(host: host, port: port))
        }
    }

    static func hostAndPort(_ text: String, allowZeroPort: Bool) -> Result<(String, Int), ParseFailure> {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                return .failure(ParseFailure("'\(text)' is not an address; write \"[::1]:8080\" for IPv6"))
            }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
            guard isNumericIPv6(String(host)) else {
                return .failure(ParseFailure("'\(host)' is not an IPv6 address"))
            }
        } else {
            guard let colon = text.lastIndex(of: ":"), !text[..<colon].contains(":") else {
                return .failure(
                    ParseFailure(
                        "'\(text)' is not an address; write host:port, e.g. \"127.0.0.1:8001\" (IPv6: \"[::1]:8001\")"))
            }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard !host.isEmpty else { return .failure(ParseFailure("'\(text)' has no host")) }
        guard let port = Int(portText), port >= (allowZeroPort ? 0 : 1), port <= 65535 else {
            return .failure(ParseFailure("'\(portText)' is not a port (1–65535)"))
        }
        return .success((String(host), port))
    }

    static func isNumericIPv4(_ host: String) -> Bool {
        var address = in_addr()
        return inet_pton(AF_INET, host, &address) == 1
    }

    static func isNumericIPv6(_ host: String) -> Bool {
        var address = in6_addr()
        return inet_pton(AF_INET6, host, &address) == 1
    }

    /// Whether a listen host is a loopback address (127.0.0.0/8 or ::1).
    public static func isLoopback(_ host: String) -> Bool {
        host.hasPrefix("127.") || host == "::1" || host == "localhost"
    }

    public struct ParseFailure: Error, Sendable, Equatable {
        public var reason: String
        public init(_ reason: String) { self.reason = reason }
    }
}

extension String {
    fileprivate func replacingSpaces() -> String {
        String(filter { $0 != " " && $0 != "_" })
    }
}
