/// libFuzzer entry for `HTTP1HeadParser`, compiled standalone with the parser's files by
/// `scripts/fuzz-head-parser.sh` (the parser depends on the standard library only).
///
/// Checks, for the input parsed as a request and as a response: no crash; every range lies within
/// the head and in order; every proper prefix of a complete head is incomplete; the same head with
/// bytes after it is the same; re-serializing a complete head canonically parses to the same fields.
@_cdecl("LLVMFuzzerTestOneInput")
public func headParserFuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    let limits = HTTP1HeadParser.Limits(maxHeadBytes: 4096, maxFields: 32)
    check(bytes, limits: limits, request: true)
    check(bytes, limits: limits, request: false)
    return 0
}

func parse(_ bytes: UnsafeRawBufferPointer, limits: HTTP1HeadParser.Limits, request: Bool) -> HTTP1HeadParser.Outcome {
    request ? HTTP1HeadParser.parseRequest(bytes, limits: limits) : HTTP1HeadParser.parseResponse(bytes, limits: limits)
}

func check(_ bytes: UnsafeRawBufferPointer, limits: HTTP1HeadParser.Limits, request: Bool) {
    let outcome = parse(bytes, limits: limits, request: request)
    switch outcome {
    case .incomplete:
        precondition(bytes.count < limits.maxHeadBytes, "incomplete at or beyond the head limit")
    case .invalid(let error):
        precondition(error.offset >= 0 && error.offset <= min(bytes.count, limits.maxHeadBytes), "error offset")
        // Whatever follows an invalid head, it stays invalid with the same error.
        if error.code != .headTooLarge {
            let again = withExtraByte(bytes) { parse($0, limits: limits, request: request) }
            precondition(again == outcome, "appending a byte changed an invalid verdict")
        }
    case .complete(let head, let length):
        precondition(length > 0 && length <= bytes.count && length <= limits.maxHeadBytes, "head length")
        precondition(head.fields.count <= limits.maxFields, "more fields than the limit")
        checkRanges(head, length: length, request: request)
        precondition(bytes[length - 2] == 0x0D && bytes[length - 1] == 0x0A, "head ends in CRLF")
        // Every proper prefix is incomplete (spot checks keep the fuzzer fast on long heads).
        for prefix in [0, 1, length / 2, length - 2, length - 1] where prefix >= 0 && prefix < length {
            let cut = UnsafeRawBufferPointer(rebasing: bytes[0..<prefix])
            precondition(parse(cut, limits: limits, request: request) == .incomplete, "prefix \(prefix) not incomplete")
        }
        let exact = UnsafeRawBufferPointer(rebasing: bytes[0..<length])
        precondition(parse(exact, limits: limits, request: request) == outcome, "trailing bytes changed the head")
        reserialize(head, bytes, limits: limits, request: request)
    }
}

func checkRanges(_ head: HTTP1Head, length: Int, request: Bool) {
    var last = 0
    func ordered(_ range: Range<Int>) {
        precondition(range.lowerBound >= last && range.upperBound <= length, "range out of order or bounds")
        last = range.upperBound
    }
    if request {
        precondition(!head.method.isEmpty && !head.target.isEmpty && head.status == 0, "request parts")
        ordered(head.method)
        ordered(head.target)
    } else {
        precondition((100...999).contains(head.status), "status")
        ordered(head.reason)
    }
    precondition(head.versionMajor == 1 && head.versionMinor <= 1, "version")
    for field in head.fields {
        precondition(field.line.lowerBound >= last, "field line order")
        precondition(field.line.lowerBound == field.name.lowerBound, "name starts the line")
        precondition(!field.name.isEmpty && field.name.upperBound < field.value.lowerBound + 1, "name before value")
        precondition(field.value.upperBound <= field.line.upperBound - 2, "value before CRLF")
        ordered(field.line)
    }
    precondition(last <= length - 2, "final CRLF")
}

/// Writes the head again canonically (single SP, `: `, CRLF) and checks it parses to the same parts.
func reserialize(_ head: HTTP1Head, _ bytes: UnsafeRawBufferPointer, limits: HTTP1HeadParser.Limits, request: Bool) {
    var out: [UInt8] = []
    let version: [UInt8] = Array("HTTP/1.".utf8) + [0x30 + head.versionMinor]
    if request {
        out += bytes[head.method] + [0x20] + bytes[head.target] + [0x20] + version
    } else {
        out += version + [0x20] + Array(String(head.status).utf8) + [0x20] + bytes[head.reason]
    }
    out += [0x0D, 0x0A]
    for field in head.fields {
        out += bytes[field.name] + [0x3A, 0x20] + bytes[field.value] + [0x0D, 0x0A]
    }
    out += [0x0D, 0x0A]
    let relaxed = HTTP1HeadParser.Limits(maxHeadBytes: out.count + 1, maxFields: limits.maxFields)
    out.withUnsafeBytes { copy in
        guard case .complete(let again, let length) = parse(copy, limits: relaxed, request: request) else {
            preconditionFailure("the re-serialized head does not parse")
        }
        precondition(length == copy.count, "re-serialized length")
        precondition(again.fields.count == head.fields.count, "field count")
        precondition(again.status == head.status && again.versionMinor == head.versionMinor, "status or version")
        if request {
            precondition(copy[again.method].elementsEqual(bytes[head.method]), "method")
            precondition(copy[again.target].elementsEqual(bytes[head.target]), "target")
        } else {
            precondition(copy[again.reason].elementsEqual(bytes[head.reason]), "reason")
        }
        for (a, b) in zip(again.fields, head.fields) {
            precondition(copy[a.name].elementsEqual(bytes[b.name]), "field name")
            precondition(copy[a.value].elementsEqual(bytes[b.value]), "field value")
            precondition(
                HTTP1Head.name(of: a, equals: "host", in: copy) == HTTP1Head.name(of: b, equals: "host", in: bytes))
        }
    }
}

func withExtraByte<T>(_ bytes: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) -> T) -> T {
    var copy = Array(bytes)
    copy.append(copy.last ?? 0x41)
    return copy.withUnsafeBytes(body)
}
