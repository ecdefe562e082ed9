#if canImport(Glibc)
    import Glibc
#endif

/// IP addresses as bytes, through the C library's `inet_pton` / `inet_ntop` (strict: IPv4 as four
/// decimal parts, no shorthand), and CIDR blocks that match them.
public enum IPAddressBytes {
    public static func parseIPv4(_ text: String) -> [UInt8]? {
        var address = in_addr()
        guard inet_pton(AF_INET, text, &address) == 1 else { return nil }
        return withUnsafeBytes(of: &address) { Array($0) }
    }

    public static func parseIPv6(_ text: String) -> [UInt8]? {
        var address = in6_addr()
        guard inet_pton(AF_INET6, text, &address) == 1 else { return nil }
        return withUnsafeBytes(of: &address) { Array($0) }
    }

    public static func formatIPv4(_ bytes: [UInt8]) -> String {
        bytes.prefix(4).map(String.init).joined(separator: ".")
    }

    public static func formatIPv6(_ bytes: [UInt8]) -> String {
        var address = in6_addr()
        withUnsafeMutableBytes(of: &address) { $0.copyBytes(from: bytes.prefix(16)) }
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard inet_ntop(AF_INET6, &address, &buffer, socklen_t(buffer.count)) != nil else { return "::" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Either family; an IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, what a dual-stack socket
    /// reports) as its IPv4 bytes.
    public static func parse(_ text: String) -> [UInt8]? {
        if let v4 = parseIPv4(text) { return v4 }
        guard let v6 = parseIPv6(text) else { return nil }
        if v6.prefix(10).allSatisfy({ $0 == 0 }) && v6[10] == 0xFF && v6[11] == 0xFF { return Array(v6[12...]) }
        return v6
    }
}

/// `10.0.0.0/8`, `2001:db8::/32`, or one address (`192.0.2.7` = /32, `::1` = /128).
public struct CIDRBlock: Sendable, Equatable, CustomStringConvertible {
    public let network: [UInt8]
    public let prefixLength: Int
    public let description: String

    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let bytes = IPAddressBytes.parse(String(parts[0])) else { return nil }
        let bits = bytes.count * 8
        let length = parts.count == 2 ? Int(parts[1]) : bits
        guard let length, (0...bits).contains(length), parts.count == 1 || !parts[1].hasPrefix("+") else { return nil }
        network = bytes
        prefixLength = length
        description = text
    }

    public func contains(_ address: [UInt8]) -> Bool {
        guard address.count == network.count else { return false }
        var remaining = prefixLength
        for index in network.indices where remaining > 0 {
            let mask: UInt8 = remaining >= 8 ? 0xFF : ~(0xFF >> UInt8(remaining))
            if address[index] & mask != network[index] & mask { return false }
            remaining -= 8
        }
        return true
    }
}
