/// libFuzzer entry for `BodyFramingTracker`, compiled standalone with the tracker and the head
/// parser's files (for `HTTP1HeadParser.isToken`) by `scripts/fuzz-body-framing.sh`.
///
/// The first input byte picks a split point; the rest is a chunked body (and, checked on the way,
/// a Content-Length body). Checks: no crash; each step consumes at most its input; `data` ranges
/// lie within what was consumed and in order; `relayEnd` is at most `consumed`; what a step leaves
/// unconsumed without ending is part of one size line; the body fed whole, split in two at the
/// chosen point and byte by byte gives the same verdict, payload, relayed bytes and end.
@_cdecl("LLVMFuzzerTestOneInput")
public func bodyFramingFuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard size > 0, let data else { return 0 }
    let body = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    let cut = body.isEmpty ? 0 : Int(data[0]) * body.count / 255

    let whole = feed(.chunked, [body])
    let split = feed(.chunked, [Array(body[..<cut]), Array(body[cut...])])
    check(split.same(as: whole), "split at \(cut) differs: \(split) vs \(whole)")
    if body.count <= 512 {
        let bytewise = feed(.chunked, body.map { [$0] })
        check(bytewise.same(as: whole), "byte by byte differs: \(bytewise) vs \(whole)")
    }
    if case .ended(let consumed) = whole.verdict {
        // The body alone, without what followed it, ends the same way.
        let exact = feed(.chunked, [Array(body[..<consumed])])
        check(exact == whole, "bytes after the end changed the verdict")
    }

    let length = cut
    let counted = feed(.length(length), [Array(body[..<(body.count / 2)]), Array(body[(body.count / 2)...])])
    if body.count >= length {
        check(counted.verdict == .ended(consumed: length) && counted.payload == Array(body[..<length]), "length")
    } else {
        check(counted.verdict == .incomplete && counted.payload == body, "length incomplete")
    }
    return 0
}

/// `precondition` without its message in an optimized build: this one says what failed.
func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }
}

struct Fed: Equatable {
    enum Verdict: Equatable {
        case incomplete
        case ended(consumed: Int)
        case refused(BodyFramingTracker.Error.Code)
    }
    var verdict: Verdict
    var payload: [UInt8] = []
    var relayed: [UInt8] = []

    /// The same outcome: on a refusal, what came before the error depends on where inputs were cut.
    func same(as other: Fed) -> Bool {
        if case .refused = verdict { return verdict == other.verdict }
        return self == other
    }
}

/// Feeds `pieces` as `UpstreamHTTPHandler` does (unconsumed bytes go in again with the next piece),
/// checking each step's invariants.
func feed(_ framing: BodyFramingTracker.Framing, _ pieces: [[UInt8]]) -> Fed {
    var tracker = BodyFramingTracker(framing)
    var fed = Fed(verdict: .incomplete)
    var carried: [UInt8] = []
    var base = 0
    for piece in pieces {
        let input = carried + piece
        var ranges: [Range<Int>] = []
        let result = input.withUnsafeBytes { raw in
            Result { () throws(BodyFramingTracker.Error) in try tracker.consume(raw) { ranges.append($0) } }
        }
        let step: BodyFramingTracker.Step
        switch result {
        case .success(let taken): step = taken
        case .failure(let error):
            fed.verdict = .refused(error.code)
            return fed
        }
        check(step.consumed >= 0 && step.consumed <= input.count, "consumed beyond the input")
        check(step.relayEnd >= 0 && step.relayEnd <= step.consumed, "relayEnd beyond consumed")
        check(step.ended == tracker.isComplete || framing == .none, "ended but not complete")
        var last = 0
        for range in ranges {
            check(!range.isEmpty && range.lowerBound >= last && range.upperBound <= step.consumed, "data range")
            last = range.upperBound
            fed.payload += input[range]
        }
        fed.relayed += input[..<step.relayEnd]
        if step.ended {
            fed.verdict = .ended(consumed: base + step.consumed)
            return fed
        }
        carried = Array(input[step.consumed...])
        // Left over without an end: the start of one size line, never a line end.
        check(!carried.contains(0x0A), "a whole line left unconsumed")
        check(carried.count <= BodyFramingTracker.maxSizeLineBytes + 1, "an overlong size line kept")
        base += step.consumed
    }
    return fed
}
