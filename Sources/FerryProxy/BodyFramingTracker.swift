/// Finds where an HTTP/1 message body ends while its bytes are relayed as they are.
///
/// Ferry relays bodies without decoding and re-encoding them: this tracker only counts down a
/// Content-Length, or scans chunked framing (RFC 9112 §7.1) — chunk-size lines, data, the CRLF
/// after each chunk, the last chunk and the trailer section — checking its syntax as strictly as
/// llhttp does, and reports which bytes are chunk *data* for a receiver that cannot take the
/// framing as it is (an HTTP/1.0 client). Trailer fields are read and dropped: `Step.relayEnd`
/// stops before the last chunk, so that the relay writes its own, trailer-less, end.
///
/// A chunk-size line is taken whole or not at all: when one is cut by the end of the input, the
/// step stops before it and the caller hands those bytes in again with the next ones (so a relay
/// never sends half a size line that may turn out to be the last chunk's).
///
/// Depends on the Swift standard library only, so that the fuzzer can compile it standalone.
struct BodyFramingTracker {
    enum Framing: Equatable {
        /// No body (a response to HEAD, 1xx, 204, 304).
        case none
        case length(Int)
        case chunked
        /// Delimited by the end of the connection (a response without a length).
        case untilClose
    }

    struct Error: Swift.Error, Equatable {
        enum Code: Equatable {
            case invalidChunkSize
            case chunkSizeTooLarge
            case invalidChunkExtension
            case chunkSizeLineTooLong
            case missingCRLFAfterChunk
            case invalidTrailer
            case trailerTooLarge
        }
        var code: Code
    }

    /// What one call to `consume` found.
    struct Step: Equatable {
        /// Bytes of the input that belong to this body, from its start. Fewer than given when the
        /// body ended (the rest follows the message) or a chunk-size line is cut (hand its bytes
        /// in again with the next ones).
        var consumed = 0
        /// The body's end was reached within `consumed`.
        var ended = false
        /// Within `consumed`: where the bytes to relay with their framing stop — before the last
        /// chunk and the trailers; `consumed` otherwise.
        var relayEnd = 0
    }

    private enum ChunkState: Equatable {
        case sizeLine
        case data(remaining: Int)
        case dataCR
        case dataLF
        /// Start of a trailer line (or of the final empty line).
        case trailerLineStart
        /// In a trailer field's name, up to its colon.
        case trailerName
        /// In a trailer field's value.
        case trailerLine
        /// The LF of a trailer line (`empty`: it is the final empty line).
        case trailerLF(empty: Bool)
        case done
    }

    /// Trailer sections beyond this many bytes are refused (they are read only to be dropped).
    static let maxTrailerBytes = 16 * 1024
    /// A chunk-size line (extensions included) longer than this is refused.
    static let maxSizeLineBytes = 4096

    let framing: Framing
    private var remaining = 0
    private var chunk = ChunkState.sizeLine
    private var trailerBytes = 0

    init(_ framing: Framing) {
        self.framing = framing
        if case .length(let length) = framing { remaining = length }
    }

    /// The body has been read whole (never for `.untilClose`, which the connection's end ends).
    var isComplete: Bool {
        switch framing {
        case .none: true
        case .length: remaining == 0
        case .chunked: chunk == .done
        case .untilClose: false
        }
    }

    /// Reads body bytes from the start of `bytes`; `data` gets each range (relative to `bytes`) of
    /// payload bytes, for a receiver that takes the body unframed.
    /// - Parameter stopAfterData: return after the first non-empty data range (a reader that hands
    ///   on one slice at a time calls again for the rest).
    mutating func consume(
        _ bytes: UnsafeRawBufferPointer, stopAfterData: Bool = false, data: (Range<Int>) -> Void = { _ in }
    ) throws(Error) -> Step {
        switch framing {
        case .none:
            return Step(consumed: 0, ended: true, relayEnd: 0)
        case .untilClose:
            if !bytes.isEmpty { data(0..<bytes.count) }
            return Step(consumed: bytes.count, ended: false, relayEnd: bytes.count)
        case .length:
            let taken = min(remaining, bytes.count)
            remaining -= taken
            if taken > 0 { data(0..<taken) }
            return Step(consumed: taken, ended: remaining == 0, relayEnd: taken)
        case .chunked:
            return try consumeChunked(bytes, stopAfterData: stopAfterData, data: data)
        }
    }

    private mutating func consumeChunked(
        _ bytes: UnsafeRawBufferPointer, stopAfterData: Bool, data: (Range<Int>) -> Void
    ) throws(Error) -> Step {
        var index = 0
        // Already past the last chunk's size line: nothing more is relayed.
        var relayEnd: Int? = isInTrailers ? 0 : nil
        scan: while index < bytes.count {
            switch chunk {
            case .sizeLine:
                guard let (size, lineEnd) = try Self.sizeLine(bytes, from: index) else { break scan }
                if size == 0 {
                    relayEnd = index
                    chunk = .trailerLineStart
                } else {
                    chunk = .data(remaining: size)
                }
                index = lineEnd
            case .data(let left):
                let taken = min(left, bytes.count - index)
                data(index..<index + taken)
                index += taken
                chunk = left == taken ? .dataCR : .data(remaining: left - taken)
                if stopAfterData && taken > 0 { break scan }
            case .dataCR:
                guard bytes[index] == UInt8(ascii: "\r") else { throw Error(code: .missingCRLFAfterChunk) }
                chunk = .dataLF
                index += 1
            case .dataLF:
                guard bytes[index] == UInt8(ascii: "\n") else { throw Error(code: .missingCRLFAfterChunk) }
                chunk = .sizeLine
                index += 1
            case .trailerLineStart, .trailerName, .trailerLine, .trailerLF:
                try trailerByte(bytes[index])
                index += 1
            case .done:
                break scan
            }
        }
        return Step(consumed: index, ended: chunk == .done, relayEnd: relayEnd ?? index)
    }

    private var isInTrailers: Bool {
        switch chunk {
        case .trailerLineStart, .trailerName, .trailerLine, .trailerLF, .done: true
        case .sizeLine, .data, .dataCR, .dataLF: false
        }
    }

    private mutating func trailerByte(_ byte: UInt8) throws(Error) {
        trailerBytes += 1
        guard trailerBytes <= Self.maxTrailerBytes else { throw Error(code: .trailerTooLarge) }
        switch chunk {
        case .trailerLineStart:
            if byte == UInt8(ascii: "\r") {
                chunk = .trailerLF(empty: true)
            } else if HTTP1HeadParser.isToken(byte) {
                chunk = .trailerName
            } else {
                throw Error(code: .invalidTrailer)
            }
        case .trailerName:
            // A field line, as in a head: no whitespace before the colon (RFC 9112 §5.1).
            if byte == UInt8(ascii: ":") {
                chunk = .trailerLine
            } else if !HTTP1HeadParser.isToken(byte) {
                throw Error(code: .invalidTrailer)
            }
        case .trailerLine:
            if byte == UInt8(ascii: "\r") {
                chunk = .trailerLF(empty: false)
            } else if byte == UInt8(ascii: "\n") || (byte < 0x20 && byte != 0x09) || byte == 0x7F {
                throw Error(code: .invalidTrailer)
            }
        case .trailerLF(let empty):
            guard byte == UInt8(ascii: "\n") else { throw Error(code: .invalidTrailer) }
            chunk = empty ? .done : .trailerLineStart
        case .sizeLine, .data, .dataCR, .dataLF, .done:
            preconditionFailure("not in the trailer section")
        }
    }

    /// A whole chunk-size line at `start`: `chunk-size [ chunk-ext ] CRLF` with
    /// `chunk-ext = *( ";" name [ "=" ( token / quoted-string ) ] )`.
    ///
    /// RFC 9112 §7.1.1 allows BWS around `;` and `=`; llhttp, as NIO's decoder that this replaced,
    /// refuses any whitespace in the line, and the line is relayed as it is to clients whose
    /// parsers may refuse it too.
    /// Returns the size and the index after the LF, or nil when the line is not complete yet.
    static func sizeLine(_ bytes: UnsafeRawBufferPointer, from start: Int) throws(Error) -> (Int, Int)? {
        var index = start
        var size = 0
        var digits = 0
        func next() throws(Error) -> UInt8? {
            guard index < bytes.count else {
                if index - start > maxSizeLineBytes { throw Error(code: .chunkSizeLineTooLong) }
                return nil
            }
            if index - start > maxSizeLineBytes { throw Error(code: .chunkSizeLineTooLong) }
            return bytes[index]
        }
        while let byte = try next(), let value = hexValue(byte) {
            // 15 hex digits keep the size within an Int; no real chunk comes near that.
            guard digits < 15 else { throw Error(code: .chunkSizeTooLarge) }
            size = size << 4 | value
            digits += 1
            index += 1
        }
        guard try next() != nil else { return nil }
        guard digits > 0 else { throw Error(code: .invalidChunkSize) }
        // Extensions, each: ";" token [ "=" ( token / quoted-string ) ].
        func token() throws(Error) -> Bool? {
            let first = index
            while let byte = try next(), HTTP1HeadParser.isToken(byte) { index += 1 }
            guard index < bytes.count else { return nil }
            return index > first
        }
        while true {
            guard let byte = try next() else { return nil }
            if byte == UInt8(ascii: "\r") { break }
            guard byte == UInt8(ascii: ";") else {
                throw Error(code: index == start + digits ? .invalidChunkSize : .invalidChunkExtension)
            }
            index += 1
            guard let named = try token() else { return nil }
            guard named else { throw Error(code: .invalidChunkExtension) }
            guard let afterName = try next() else { return nil }
            guard afterName == UInt8(ascii: "=") else { continue }
            index += 1
            guard let valueStart = try next() else { return nil }
            if valueStart == UInt8(ascii: "\"") {
                index += 1
                quoted: while true {
                    guard let byte = try next() else { return nil }
                    index += 1
                    switch byte {
                    case UInt8(ascii: "\""): break quoted
                    case UInt8(ascii: "\\"):
                        guard let escaped = try next() else { return nil }
                        guard escaped == 0x09 || (escaped >= 0x20 && escaped != 0x7F) else {
                            throw Error(code: .invalidChunkExtension)
                        }
                        index += 1
                    case 0x09, 0x20...0x7E, 0x80...0xFF: continue
                    default: throw Error(code: .invalidChunkExtension)
                    }
                }
            } else {
                guard let valued = try token() else { return nil }
                guard valued else { throw Error(code: .invalidChunkExtension) }
            }
        }
        // At CR: LF must follow.
        index += 1
        guard let lf = try next() else { return nil }
        guard lf == UInt8(ascii: "\n") else { throw Error(code: .invalidChunkSize) }
        return (size, index + 1)
    }

    private static func hexValue(_ byte: UInt8) -> Int? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): Int(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): Int(byte - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): Int(byte - UInt8(ascii: "A") + 10)
        default: nil
        }
    }
}
