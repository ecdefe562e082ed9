/// An HTTP/1 request or response head, parsed into offsets over its bytes.
///
/// Every range is relative to the head's first byte (the first byte given to the parser), so the
/// head is only meaningful together with the bytes it was parsed from. Nothing here owns a copy
/// of a name or a value: the hot path reads them in place and never builds a `String`.
/// Depends on the Swift standard library only, so that the fuzzer can compile it standalone.
struct HTTP1Head: Sendable, Equatable {
    /// One field line.
    struct Field: Sendable, Equatable {
        /// The field name (never empty).
        var name: Range<Int>
        /// The value without leading and trailing SP/HTAB (may be empty).
        var value: Range<Int>
        /// The whole line, CRLF included.
        var line: Range<Int>
    }

    /// The method of a request (empty for a response).
    var method: Range<Int> = 0..<0
    /// The request-target of a request (empty for a response).
    var target: Range<Int> = 0..<0
    var versionMajor: UInt8 = 1
    var versionMinor: UInt8 = 1
    /// The status code of a response (0 for a request).
    var status: Int = 0
    /// The reason phrase of a response (may be empty; empty for a request).
    var reason: Range<Int> = 0..<0
    /// The field lines in order.
    var fields: [Field] = []
}

extension HTTP1Head {
    /// Whether `field`'s name equals `lowercasedName` ignoring ASCII case. `lowercasedName` must be
    /// lowercase ASCII (field names are tokens, so ASCII case folding is the whole story).
    @inline(__always)
    static func name(
        of field: Field, equals lowercasedName: UnsafeRawBufferPointer, in bytes: UnsafeRawBufferPointer
    ) -> Bool {
        guard field.name.count == lowercasedName.count else { return false }
        var index = field.name.lowerBound
        for expected in lowercasedName {
            var byte = bytes[index]
            if byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") { byte |= 0x20 }
            guard byte == expected else { return false }
            index += 1
        }
        return true
    }

    /// Whether `field`'s name equals `lowercasedName` ignoring ASCII case (no allocation).
    static func name(of field: Field, equals lowercasedName: StaticString, in bytes: UnsafeRawBufferPointer) -> Bool {
        name(
            of: field,
            equals: UnsafeRawBufferPointer(start: lowercasedName.utf8Start, count: lowercasedName.utf8CodeUnitCount),
            in: bytes)
    }

    /// Calls `body` with every field named `lowercasedName` (ASCII case-insensitive), in order.
    func forEachField(
        named lowercasedName: StaticString, in bytes: UnsafeRawBufferPointer, _ body: (Field) throws -> Void
    ) rethrows {
        for field in fields where Self.name(of: field, equals: lowercasedName, in: bytes) {
            try body(field)
        }
    }

    /// The first field named `lowercasedName` (ASCII case-insensitive).
    func firstField(named lowercasedName: StaticString, in bytes: UnsafeRawBufferPointer) -> Field? {
        fields.first { Self.name(of: $0, equals: lowercasedName, in: bytes) }
    }

    /// How many fields are named `lowercasedName` (ASCII case-insensitive).
    func count(named lowercasedName: StaticString, in bytes: UnsafeRawBufferPointer) -> Int {
        var count = 0
        for field in fields where Self.name(of: field, equals: lowercasedName, in: bytes) { count += 1 }
        return count
    }
}

/// Why a head was refused. A struct with a code rather than a public enum, so that codes can be
/// added; `reason` is a static text fit for a 400 (or 431) body.
struct HTTP1HeadError: Error, Sendable, Equatable {
    enum Code: Sendable, Equatable {
        /// No end of head within `Limits.maxHeadBytes` (answer 431).
        case headTooLarge
        /// More field lines than `Limits.maxFields` (answer 431).
        case tooManyFields
        case invalidMethod
        case unknownMethod
        case invalidTarget
        case invalidTargetForm
        case invalidSpacing
        case invalidVersion
        case unsupportedVersion
        case invalidStatus
        case invalidReason
        case invalidFieldName
        case whitespaceBeforeColon
        case invalidFieldValue
        case obsoleteLineFolding
        case bareCR
        case bareLF
    }

    var code: Code
    /// The offset (from the head's first byte) of the byte that made the head invalid.
    var offset: Int

    /// Whether the answer is 431 (the head is too large) rather than 400.
    var isTooLarge: Bool { code == .headTooLarge || code == .tooManyFields }

    var reason: StaticString {
        switch code {
        case .headTooLarge: "head too large"
        case .tooManyFields: "too many header fields"
        case .invalidMethod: "invalid method"
        case .unknownMethod: "unknown method"
        case .invalidTarget: "invalid character in request target"
        case .invalidTargetForm: "request target in no known form"
        case .invalidSpacing: "more than one space between request line parts"
        case .invalidVersion: "invalid HTTP version"
        case .unsupportedVersion: "unsupported HTTP version"
        case .invalidStatus: "invalid status code"
        case .invalidReason: "invalid reason phrase"
        case .invalidFieldName: "invalid header field name"
        case .whitespaceBeforeColon: "whitespace between header field name and colon"
        case .invalidFieldValue: "invalid character in header field value"
        case .obsoleteLineFolding: "obsolete line folding"
        case .bareCR: "CR not followed by LF"
        case .bareLF: "LF without CR"
        }
    }
}
