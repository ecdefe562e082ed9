import Foundation

/// A `ticket_keys` file: the TLS session ticket keys a fleet of hosts shares, so that a client
/// resumes its session on any host behind the balancer.
///
/// Text, one key per line in base64 (80 bytes: 16 name, 32 HMAC, 32 AES, as nginx's
/// `ssl_session_ticket_key`), `#` comments and blank lines ignored; the first key encrypts new
/// tickets and every key decrypts. A binary file of whole 80-byte keys (nginx's
/// `openssl rand 80 > ticket.key`) is read too, first key first. Written by
/// `ferry tls generate-ticket-key`.
public enum TicketKeyFile {
    public static let keyLength = 80
    /// More keys than this is a mistake (a file that was appended to forever), not a rotation.
    public static let maximumKeys = 64

    public struct Failure: Error, Equatable, CustomStringConvertible {
        public var line: Int?
        public var reason: String
        public var description: String { line.map { "line \($0): \(reason)" } ?? reason }

        public init(line: Int?, reason: String) {
            self.line = line
            self.reason = reason
        }
    }

    /// Reads and checks the file; the keys in order, the encrypting key first.
    public static func read(path: String) throws -> [[UInt8]] {
        guard let data = FileManager.default.contents(atPath: path) else {
            let reason = access(path, R_OK) == 0 ? "cannot be read" : String(cString: strerror(errno))
            throw Failure(line: nil, reason: "cannot read '\(path)': \(reason)")
        }
        return try parse(Array(data))
    }

    public static func parse(_ bytes: [UInt8]) throws -> [[UInt8]] {
        let keys: [[UInt8]]
        if let text = String(validating: bytes, as: UTF8.self), isText(bytes) {
            keys = try parseText(text)
        } else if !bytes.isEmpty && bytes.count % keyLength == 0 {
            keys = stride(from: 0, to: bytes.count, by: keyLength).map { Array(bytes[$0..<($0 + keyLength)]) }
        } else {
            throw Failure(
                line: nil,
                reason: "neither base64 lines nor whole \(keyLength)-byte binary keys (\(bytes.count) bytes)")
        }
        guard !keys.isEmpty else {
            throw Failure(line: nil, reason: "holds no key (generate one: ferry tls generate-ticket-key)")
        }
        guard keys.count <= maximumKeys else {
            throw Failure(line: nil, reason: "holds \(keys.count) keys; at most \(maximumKeys) (drop the oldest)")
        }
        var names = Set<[UInt8]>()
        for key in keys where !names.insert(Array(key.prefix(16))).inserted {
            throw Failure(line: nil, reason: "two keys share the name \(hex(key.prefix(16))): each key must differ")
        }
        return keys
    }

    /// A new random key, as one line of the file (no newline).
    public static func generateLine() -> String {
        var generator = SystemRandomNumberGenerator()
        let key = (0..<keyLength).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return Data(key).base64EncodedString()
    }

    private static func parseText(_ text: String) throws -> [[UInt8]] {
        var keys: [[UInt8]] = []
        for (index, rawLine) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let line = rawLine.trimmingCharacters(in: .whitespaces.union(CharacterSet(charactersIn: "\r")))
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let decoded = Data(base64Encoded: line) else {
                throw Failure(line: index + 1, reason: "not base64")
            }
            guard decoded.count == keyLength else {
                throw Failure(
                    line: index + 1, reason: "a key is \(keyLength) bytes (108 base64 characters), got \(decoded.count)"
                )
            }
            keys.append(Array(decoded))
        }
        return keys
    }

    /// Printable ASCII and line breaks only: random binary keys are never that.
    private static func isText(_ bytes: [UInt8]) -> Bool {
        bytes.allSatisfy { (0x20...0x7e).contains($0) || $0 == 0x0a || $0 == 0x0d || $0 == 0x09 }
    }

    private static func hex(_ bytes: ArraySlice<UInt8>) -> String {
        bytes.map { String(format: "%02x", $0) }.joined()
    }
}
