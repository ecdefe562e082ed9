import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP2
import Testing

@testable import FerryProxy

/// `HTTP2HeaderValidation` against swift-nio-http2's own header block validation, which it
/// replaces: the same blocks, sent by a client that checks nothing to a library server that
/// checks everything, must get the same verdict from both (accepted, or the stream reset).
@Suite struct HTTP2HeaderValidationDifferentialTests {
    /// What swift-nio-http2 (validation on, extended CONNECT allowed) does with `block` as a
    /// request, or as the trailers of a valid request.
    static func libraryAccepts(_ block: HPACKHeaders, trailers: Bool) throws -> Bool {
        let server = EmbeddedChannel()
        let recorder = Recorder()
        try server.pipeline.syncOperations.addHandler(
            NIOHTTP2Handler(
                mode: .server,
                initialSettings: [
                    HTTP2Setting(parameter: .maxConcurrentStreams, value: 100),
                    HTTP2Setting(parameter: .enableConnectProtocol, value: 1),
                ]))
        try server.pipeline.syncOperations.addHandler(recorder)
        let client = EmbeddedChannel()
        try client.pipeline.syncOperations.addHandler(
            NIOHTTP2Handler(mode: .client, headerBlockValidation: .disabled, contentLengthValidation: .disabled))
        defer {
            _ = try? server.finish(acceptAlreadyClosed: true)
            _ = try? client.finish(acceptAlreadyClosed: true)
        }
        try client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        func shuttle() throws {
            for _ in 0..<8 {
                var moved = false
                while let bytes = try client.readOutbound(as: ByteBuffer.self) {
                    try server.writeInbound(bytes)
                    moved = true
                }
                while let bytes = try server.readOutbound(as: ByteBuffer.self) {
                    try client.writeInbound(bytes)
                    moved = true
                }
                if !moved { return }
            }
        }
        try shuttle()
        let stream = HTTP2StreamID(1)
        if trailers {
            let request: HPACKHeaders = [":method": "POST", ":scheme": "https", ":path": "/", ":authority": "a"]
            try client.writeOutbound(HTTP2Frame(streamID: stream, payload: .headers(.init(headers: request))))
        }
        try client.writeOutbound(
            HTTP2Frame(streamID: stream, payload: .headers(.init(headers: block, endStream: true))))
        try shuttle()
        while try server.readInbound(as: HTTP2Frame.self) != nil {}
        return recorder.headers == (trailers ? 2 : 1) && !recorder.streamError
    }

    final class Recorder: ChannelInboundHandler {
        typealias InboundIn = HTTP2Frame
        var headers = 0
        var streamError = false

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            if case .headers = unwrapInboundIn(data).payload { headers += 1 }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            streamError = true
        }
    }

    static let names = [
        ":method", ":path", ":scheme", ":authority", ":status", ":protocol", ":foo", ":", "", "x-a", "X-Upper",
        "x:y", "a b", "te", "connection", "transfer-encoding", "upgrade", "keep-alive", "proxy-connection",
        "content-type", "host", "cookie", "x-é",
    ]
    static let values = [
        "GET", "CONNECT", "POST", "/", "", "https", "websocket", "trailers", "gzip", "a\r\nb", "a\u{0}b", "a b",
        " lead", "x\u{7f}", "é", "a\tb", "/p?q=1",
    ]

    /// A valid request or trailers block, then a few random insertions, replacements or swaps.
    static func block(trailers: Bool, using random: inout HeadParserCorpus.SplitMix64) -> HPACKHeaders {
        var fields: [(String, String)] =
            trailers
            ? [("x-checksum", "abc")]
            : [(":method", "GET"), (":scheme", "https"), (":path", "/"), (":authority", "a"), ("accept", "*/*")]
        for _ in 0..<Int.random(in: 0...3, using: &random) {
            let field = (names.randomElement(using: &random)!, values.randomElement(using: &random)!)
            switch Int.random(in: 0..<4, using: &random) {
            case 0: fields.insert(field, at: Int.random(in: 0...fields.count, using: &random))
            case 1: fields[Int.random(in: 0..<fields.count, using: &random)].1 = field.1
            case 2: fields[Int.random(in: 0..<fields.count, using: &random)] = field
            default: fields.swapAt(0, Int.random(in: 0..<fields.count, using: &random))
            }
        }
        return HPACKHeaders(fields)
    }

    @Test func theVerdictsAreTheLibrarysOnGeneratedBlocks() throws {
        var random = HeadParserCorpus.SplitMix64(state: 16)
        var accepted = 0
        for index in 0..<1500 {
            let trailers = index % 5 == 4
            let block = Self.block(trailers: trailers, using: &random)
            let ours = HTTP2HeaderValidation.check(block, as: trailers ? .trailers : .request)
            let library = try Self.libraryAccepts(block, trailers: trailers)
            #expect((ours == nil) == library, "\(trailers ? "trailers" : "request") \(block): ours \(ours ?? "ok")")
            if library { accepted += 1 }
        }
        // Both verdicts are exercised.
        #expect(accepted > 200 && accepted < 1300, "\(accepted) accepted")
    }

    @Test func theRulesOneByOne() throws {
        let base: [(String, String)] = [(":method", "GET"), (":scheme", "https"), (":path", "/"), (":authority", "a")]
        let cases: [([(String, String)], Bool)] = [
            (base, true),
            (base + [("x-upper", "v")], true),
            (base + [("X-Upper", "v")], false),
            (base + [("x-a", "a\r\nb")], false),
            (base + [("te", "trailers")], true),
            (base + [("te", "gzip")], false),
            (base + [("transfer-encoding", "chunked")], false),
            ([(":method", "GET"), (":scheme", "https"), (":path", "")], false),
            ([(":method", "GET"), (":scheme", "https")], false),
            ([(":method", "CONNECT"), (":authority", "a:443")], true),
            ([(":method", "CONNECT"), (":authority", "a:443"), (":path", "/")], false),
            (base.map { $0.0 == ":method" ? (":method", "CONNECT") : $0 } + [(":protocol", "websocket")], true),
            (base + [(":protocol", "websocket")], false),
            ([("accept", "*/*")] + base, false),
            (base + [(":path", "/again")], false),
            (base + [(":status", "200")], false),
        ]
        for (fields, valid) in cases {
            let block = HPACKHeaders(fields)
            #expect((HTTP2HeaderValidation.check(block, as: .request) == nil) == valid, "\(fields)")
            #expect(try Self.libraryAccepts(block, trailers: false) == valid, "library: \(fields)")
        }
        #expect(HTTP2HeaderValidation.check([":path": "/"], as: .trailers) != nil)
        #expect(HTTP2HeaderValidation.check(["te": "gzip"], as: .trailers) == nil)
    }
}
