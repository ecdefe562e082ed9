import Foundation
import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP2

// What swift-nio-http2 costs per request by itself, server side: an EmbeddedChannel (no socket,
// no TLS, no backend) fed h2load-like GETs (HEADERS with END_STREAM, 10 streams at a time) and
// answering each with HEADERS (:status and five fields, as a file server's) and 1 KiB of DATA.
// Two ways to drive the streams: a child channel per stream (HTTP2StreamMultiplexer's inline mode,
// Ferry before session 12) and the connection's frames handled directly (Ferry's
// HTTP2RequestStream), with and without the library's header validation (Ferry validates the
// blocks clients send itself: HTTP2HeaderValidation). Prints CPU microseconds per request (user + system of this process).

let body = ByteBuffer(repeating: 0x61, count: 1024)
let responseFields: [(String, String)] = [
    ("server", "nginx"), ("date", "Mon, 07 Dec 2026 08:00:00 GMT"), ("content-type", "application/octet-stream"),
    ("content-length", "1024"), ("last-modified", "Mon, 07 Dec 2026 07:00:00 GMT"),
]

func response() -> HPACKHeaders {
    var headers: HPACKHeaders = [":status": "200"]
    for (name, value) in responseFields { headers.add(name: name, value: value) }
    return headers
}

/// Answers each request on its stream's child channel.
final class ChildResponder: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .headers(let headers) = unwrapInboundIn(data), headers.endStream else { return }
        context.write(wrapOutboundOut(.headers(.init(headers: response()))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.data(.init(data: .byteBuffer(body), endStream: true))), promise: nil)
    }
}

/// Answers each request from the connection's frames.
final class FrameResponder: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard case .headers(let headers) = frame.payload, headers.endStream else { return }
        context.write(
            wrapOutboundOut(HTTP2Frame(streamID: frame.streamID, payload: .headers(.init(headers: response())))),
            promise: nil)
        context.writeAndFlush(
            wrapOutboundOut(
                HTTP2Frame(streamID: frame.streamID, payload: .data(.init(data: .byteBuffer(body), endStream: true)))),
            promise: nil)
    }
}

/// A frame's 9-byte header followed by its payload.
func frame(type: UInt8, flags: UInt8, stream: UInt32, payload: ByteBuffer) -> ByteBuffer {
    var out = ByteBuffer()
    out.writeInteger(UInt8(truncatingIfNeeded: payload.readableBytes >> 16))
    out.writeInteger(UInt16(truncatingIfNeeded: payload.readableBytes))
    out.writeInteger(type)
    out.writeInteger(flags)
    out.writeInteger(stream)
    out.writeImmutableBuffer(payload)
    return out
}

func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
        + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

func run(childChannels: Bool, validation: Bool = true, requests: Int, concurrent: Int) throws -> Double {
    let channel = EmbeddedChannel()
    if childChannels {
        _ = try channel.configureHTTP2Pipeline(mode: .server) { stream in
            stream.eventLoop.makeCompletedFuture { try stream.pipeline.syncOperations.addHandler(ChildResponder()) }
        }.wait()
    } else {
        var settings = NIOHTTP2Handler.ConnectionConfiguration()
        settings.headerBlockValidation = validation ? .enabled : .disabled
        try channel.pipeline.syncOperations.addHandler(
            NIOHTTP2Handler(mode: .server, connectionConfiguration: settings))
        try channel.pipeline.syncOperations.addHandler(FrameResponder())
    }
    try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
    // The client's preface, empty SETTINGS, the ACK of the server's, and a connection window
    // large enough for every response.
    var start = ByteBuffer(string: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    start.writeImmutableBuffer(frame(type: 4, flags: 0, stream: 0, payload: ByteBuffer()))
    start.writeImmutableBuffer(frame(type: 4, flags: 1, stream: 0, payload: ByteBuffer()))
    var increment = ByteBuffer()
    increment.writeInteger(UInt32(Int32.max) - 65_535)
    start.writeImmutableBuffer(frame(type: 8, flags: 0, stream: 0, payload: increment))
    try channel.writeInbound(start)
    while try channel.readOutbound(as: ByteBuffer.self) != nil {}
    // A GET as h2load sends it, encoded once (indexed fields: each repeat is a few bytes in a real
    // connection; here the same literal block, as the library's own benchmark does).
    var encoder = HPACKEncoder(allocator: ByteBufferAllocator())
    var block = ByteBuffer()
    try encoder.encode(
        headers: [
            ":method": "GET", ":scheme": "https", ":path": "/tts-ws/tts/wav/1k.bin", ":authority": "127.0.0.1:8443",
            "user-agent": "h2load nghttp2/1.52.0",
        ],
        to: &block)
    let before = cpuSeconds()
    var stream: UInt32 = 1
    var done = 0
    while done < requests {
        for _ in 0..<concurrent {
            try channel.writeInbound(frame(type: 1, flags: 0x05, stream: stream, payload: block))
            stream += 2
        }
        channel.embeddedEventLoop.run()
        while try channel.readOutbound(as: ByteBuffer.self) != nil {}
        done += concurrent
    }
    let seconds = cpuSeconds() - before
    _ = try channel.finish(acceptAlreadyClosed: true)
    return seconds / Double(requests) * 1e6
}

let requests = Int(CommandLine.arguments.dropFirst().first ?? "") ?? 100_000
let modes: [(String, Bool, Bool)] = [
    ("child channel per stream", true, true),
    ("frames on the connection", false, true),
    ("frames, header validation off (Ferry's configuration)", false, false),
]
for (name, childChannels, validation) in modes {
    _ = try run(childChannels: childChannels, validation: validation, requests: 10_000, concurrent: 10)  // warm up
    let results = try (0..<5).map { _ in
        try run(childChannels: childChannels, validation: validation, requests: requests, concurrent: 10)
    }.sorted()
    print("\(name): \(String(format: "%.1f", results[2])) µs of CPU per request (median of 5 × \(requests))")
}
