import FerryConfig

/// The PROXY protocol header a layer-4 balancer (HAProxy `send-proxy`, cloud load balancers) puts
/// in front of a connection to tell who the client is: version 1 (a text line) and version 2
/// (binary, with TLVs), as specified in HAProxy's proxy-protocol.txt.
///
/// Hand-written: no Swift library parses it. Every length is checked before it is used, unknown
/// TLVs are skipped, a CRC32C TLV is verified, and the whole header is bounded
/// (`maximumLength`). Tested against the `proxy-protocol` Python library on a generated corpus
/// and by fuzzing (ProxyProtocolTests).
public enum ProxyProtocolHeader: Equatable, Sendable {
    /// The client's address as the balancer saw it.
    case proxied(address: String, port: Int)
    /// A v2 LOCAL command (the balancer's own health check), or a header that names no IP
    /// address (v1 UNKNOWN, v2 UNSPEC or UNIX): the connection's own peer address stands.
    case local

    public enum ParseResult: Equatable, Sendable {
        case needMoreData
        /// The header and how many bytes it took.
        case header(ProxyProtocolHeader, length: Int)
        case invalid(String)
    }

    static let v2Signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]
    static let v1Prefix = Array("PROXY ".utf8)
    /// v1's longest line (the specification's 107 bytes, CRLF included).
    static let v1MaximumLength = 107
    /// v2: the 16-byte fixed part and at most this many bytes of addresses and TLVs.
    static let v2MaximumPayload = 2048
    public static var maximumLength: Int { 16 + v2MaximumPayload }

    /// Whether `bytes` could be the start of a header (used to refuse one from an untrusted peer).
    public static func mayStartHeader(_ bytes: some Collection<UInt8>) -> Bool {
        let prefix = Array(bytes.prefix(12))
        return v2Signature.starts(with: prefix) && !prefix.isEmpty
            || v1Prefix.starts(with: prefix.prefix(6)) && !prefix.isEmpty
    }

    public static func parse(_ bytes: some Collection<UInt8>) -> ParseResult {
        let data = Array(bytes.prefix(maximumLength))
        guard let first = data.first else { return .needMoreData }
        if first == 0x0D { return parseV2(data) }
        if first == UInt8(ascii: "P") { return parseV1(data) }
        return .invalid("not a PROXY protocol header")
    }

    // MARK: - Version 1

    private static func parseV1(_ data: [UInt8]) -> ParseResult {
        let checked = min(data.count, v1Prefix.count)
        guard data.prefix(checked).elementsEqual(v1Prefix.prefix(checked)) else {
            return .invalid("not a PROXY protocol header")
        }
        guard let lineFeed = data.prefix(v1MaximumLength).firstIndex(of: 0x0A) else {
            return data.count >= v1MaximumLength ? .invalid("v1 line longer than 107 bytes") : .needMoreData
        }
        guard lineFeed > 0, data[lineFeed - 1] == 0x0D else { return .invalid("v1 line does not end in CRLF") }
        let content = data[0..<(lineFeed - 1)]
        // UNKNOWN: "the receiver must ignore anything presented before the CRLF".
        let unknown = Array("PROXY UNKNOWN".utf8)
        if content.starts(with: unknown), content.count == unknown.count || content[unknown.count] == 0x20 {
            return .header(.local, length: lineFeed + 1)
        }
        // Printable ASCII only: a NUL would end the C string `inet_pton` reads (found by the
        // differential test: "10.1.2.3\0junk" passed as 10.1.2.3).
        guard content.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else {
            return .invalid("v1 line holds a byte that is not printable ASCII")
        }
        let fields = String(decoding: content, as: UTF8.self).split(separator: " ", omittingEmptySubsequences: false)
        guard fields.count >= 2, fields[0] == "PROXY" else { return .invalid("v1: malformed line") }
        guard fields.count == 6, fields[1] == "TCP4" || fields[1] == "TCP6" else {
            return .invalid("v1: expected TCP4, TCP6 or UNKNOWN with two addresses and two ports")
        }
        let isV6 = fields[1] == "TCP6"
        guard let source = validAddress(String(fields[2]), v6: isV6), validAddress(String(fields[3]), v6: isV6) != nil,
            let sourcePort = port(fields[4]), port(fields[5]) != nil
        else { return .invalid("v1: malformed address or port") }
        return .header(.proxied(address: source, port: sourcePort), length: lineFeed + 1)
    }

    /// 0…65535 in decimal, no sign, no leading zero (as the specification writes them).
    private static func port(_ text: Substring) -> Int? {
        guard !text.isEmpty, text.count <= 5, text.allSatisfy({ $0.isASCII && $0.isNumber }),
            text == "0" || !text.hasPrefix("0"), let value = Int(text), value <= 65535
        else { return nil }
        return value
    }

    /// The address in its canonical text form, if it is a valid one of the family.
    private static func validAddress(_ text: String, v6: Bool) -> String? {
        v6
            ? IPAddressBytes.parseIPv6(text).map(IPAddressBytes.formatIPv6)
            : IPAddressBytes.parseIPv4(text).map(IPAddressBytes.formatIPv4)
    }

    // MARK: - Version 2

    private static func parseV2(_ data: [UInt8]) -> ParseResult {
        let checked = min(data.count, v2Signature.count)
        guard data.prefix(checked).elementsEqual(v2Signature.prefix(checked)) else {
            return .invalid("not a PROXY protocol header")
        }
        guard data.count >= 16 else { return .needMoreData }
        let versionCommand = data[12]
        guard versionCommand >> 4 == 2 else { return .invalid("v2: version \(versionCommand >> 4), expected 2") }
        let command = versionCommand & 0x0F
        guard command <= 1 else { return .invalid("v2: unknown command \(command)") }
        let family = data[13] >> 4
        let transport = data[13] & 0x0F
        let payload = Int(data[14]) << 8 | Int(data[15])
        guard payload <= v2MaximumPayload else { return .invalid("v2: \(payload) bytes of addresses and TLVs") }
        guard data.count >= 16 + payload else { return .needMoreData }
        guard family <= 3, transport <= 2 else { return .invalid("v2: unknown address family or transport") }
        let addressLength: Int
        switch family {
        case 1: addressLength = 12
        case 2: addressLength = 36
        case 3: addressLength = 216
        default: addressLength = 0
        }
        let header = Array(data[0..<(16 + payload)])
        let length = 16 + payload
        // LOCAL: the receiver uses the connection's own endpoints and discards the block.
        guard command == 1 else { return .header(.local, length: length) }
        guard payload >= addressLength else { return .invalid("v2: address block shorter than its family's") }
        // UNSPEC and UNIX name no IP address: discarded like LOCAL, TLVs unread.
        guard family == 1 || family == 2 else { return .header(.local, length: length) }
        if let problem = checkTLVs(header, from: 16 + addressLength) { return .invalid(problem) }
        switch family {
        case 1:
            let address = IPAddressBytes.formatIPv4(Array(header[16..<20]))
            return .header(.proxied(address: address, port: Int(header[24]) << 8 | Int(header[25])), length: length)
        case 2:
            let address = IPAddressBytes.formatIPv6(Array(header[16..<32]))
            return .header(.proxied(address: address, port: Int(header[48]) << 8 | Int(header[49])), length: length)
        default:
            return .header(.local, length: length)
        }
    }

    /// Walks the TLVs: each must fit; a CRC32C TLV (type 0x04) must be 4 bytes and match.
    private static func checkTLVs(_ header: [UInt8], from start: Int) -> String? {
        var offset = start
        while offset < header.count {
            guard offset + 3 <= header.count else { return "v2: truncated TLV" }
            let type = header[offset]
            let length = Int(header[offset + 1]) << 8 | Int(header[offset + 2])
            guard offset + 3 + length <= header.count else { return "v2: TLV longer than the header" }
            if type == 0x04 {
                guard length == 4 else { return "v2: CRC32C TLV of \(length) bytes" }
                var zeroed = header
                for index in (offset + 3)..<(offset + 7) { zeroed[index] = 0 }
                let expected =
                    UInt32(header[offset + 3]) << 24 | UInt32(header[offset + 4]) << 16
                    | UInt32(header[offset + 5]) << 8 | UInt32(header[offset + 6])
                guard CRC32C.checksum(zeroed) == expected else { return "v2: CRC32C mismatch" }
            }
            offset += 3 + length
        }
        return nil
    }
}

/// CRC-32C (Castagnoli), as PROXY v2's checksum TLV uses: reflected, polynomial 0x82F63B78.
enum CRC32C {
    static let table: [UInt32] = (0..<256).map { index in
        var crc = UInt32(index)
        for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        return crc
    }

    static func checksum(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }
}
