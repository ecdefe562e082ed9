internal import COpenSSL
import Foundation
public import Logging
import NIOConcurrencyHelpers
public import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

/// `ferry backend websocket`: the seed's TTS service. A client sends
/// `{"id", "text", "format": "wav"|"mp3"}` on `/tts`; the service synthesizes, writes the file
/// atomically under a content-derived name in the results directory and answers
/// `{"id", "url", "sha256", "bytes", "duration_ms", "engine"}`, or `{"id", "error"}` without closing.
public final class WebSocketTTSService: Sendable {
    public struct Options: Sendable {
        public var resultsDirectory: String
        public var resultsMaxBytes: Int
        public var maxMessageBytes: Int
        public var messagesPerSecond: Int
        public var idleTimeout: TimeAmount

        public init(
            resultsDirectory: String, resultsMaxBytes: Int = 256 << 20, maxMessageBytes: Int = 64 << 10,
            messagesPerSecond: Int = 20, idleTimeout: TimeAmount = .seconds(300)
        ) {
            self.resultsDirectory = resultsDirectory
            self.resultsMaxBytes = resultsMaxBytes
            self.maxMessageBytes = maxMessageBytes
            self.messagesPerSecond = messagesPerSecond
            self.idleTimeout = idleTimeout
        }
    }

    let options: Options
    let logger: Logger
    let synthesizer: Synthesizer
    private let connections = NIOLockedValueBox<[ObjectIdentifier: any Channel]>([:])
    private let draining = NIOLockedValueBox(false)

    public init(options: Options, logger: Logger) throws {
        self.options = options
        self.logger = logger
        self.synthesizer = Synthesizer()
        for format in ["wav", "mp3"] {
            try FileManager.default.createDirectory(
                atPath: "\(options.resultsDirectory)/\(format)", withIntermediateDirectories: true)
        }
        logger.info(
            "speech engine",
            metadata: ["engine": "\(synthesizer.engine)", "mp3": "\(synthesizer.lame != nil ? "lame" : "unavailable")"])
        if synthesizer.espeak == nil {
            logger.notice(
                "espeak-ng is not installed: the demo speaks in tones, one per character; for real speech install it (apt-get install espeak-ng; make run does) and restart"
            )
        }
    }

    public var engine: String { synthesizer.engine }

    public func start(address: BackendListenAddress, group: any EventLoopGroup) async throws -> any Channel {
        let service = self
        return try await address.bind(
            ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    let upgrader = NIOWebSocketServerUpgrader(
                        maxFrameSize: service.options.maxMessageBytes,
                        automaticErrorHandling: true,
                        shouldUpgrade: { channel, head in
                            let path = head.uri.split(separator: "?").first.map(String.init) ?? head.uri
                            guard path == "/tts", !service.draining.withLockedValue({ $0 }) else {
                                return channel.eventLoop.makeSucceededFuture(nil)
                            }
                            return channel.eventLoop.makeSucceededFuture(HTTPHeaders())
                        },
                        upgradePipelineHandler: { channel, _ in
                            channel.eventLoop.makeCompletedFuture {
                                // The plain-HTTP handler must not see WebSocket frames.
                                _ = channel.pipeline.syncOperations.removeHandler(name: "plain-http")
                                try channel.pipeline.syncOperations.addHandler(
                                    IdleStateHandler(allTimeout: service.options.idleTimeout))
                                try channel.pipeline.syncOperations.addHandler(TTSWebSocketHandler(service: service))
                            }
                        })
                    return channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                            withServerUpgrade: (upgraders: [upgrader], completionHandler: { _ in }))
                        try channel.pipeline.syncOperations.addHandler(PlainHTTPHandler(), name: "plain-http")
                    }
                })
    }

    func register(_ channel: any Channel) {
        // NIO sends the 101 before it installs the WebSocket handlers: a WebSocket whose client
        // already saw its 101 may register only after `drain` took its list, and would then never
        // be told to go away. Both take the `draining` lock first, so exactly one of them does.
        let lateForDrain = draining.withLockedValue { draining in
            connections.withLockedValue { $0[ObjectIdentifier(channel)] = channel }
            return draining
        }
        if lateForDrain { sendGoingAway(channel) }
    }

    private func sendGoingAway(_ channel: any Channel) {
        var payload = channel.allocator.buffer(capacity: 2)
        payload.write(webSocketErrorCode: .goingAway)
        let frame = WebSocketFrame(fin: true, opcode: .connectionClose, data: payload)
        channel.writeAndFlush(frame).whenComplete { _ in channel.close(promise: nil) }
    }

    func unregister(_ channel: any Channel) {
        _ = connections.withLockedValue { $0.removeValue(forKey: ObjectIdentifier(channel)) }
    }

    /// Graceful drain (SIGTERM): refuse new upgrades, close every WebSocket with 1001, wait (bounded).
    public func drain(timeout: Duration = .seconds(5)) async {
        let channels = draining.withLockedValue { draining in
            draining = true
            return connections.withLockedValue { Array($0.values) }
        }
        for channel in channels { sendGoingAway(channel) }
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline, connections.withLockedValue({ !$0.isEmpty }) {
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Synthesizes (cached by content), returns the reply fields. Runs off the event loop.
    func synthesize(text: String, format: String) throws -> [String: Any] {
        let started = ContinuousClock.now
        guard format == "wav" || format == "mp3" else { throw BackendError("format must be \"wav\" or \"mp3\"") }
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty else { throw BackendError("text is empty") }
        guard trimmed.count <= 2000 else { throw BackendError("text is longer than 2000 characters") }
        if format == "mp3" && synthesizer.lame == nil {
            throw BackendError("mp3 needs the lame encoder, which is not installed; ask for wav")
        }
        let name = SHA256Digest.hex(Array("\(synthesizer.engine)\u{0}\(format)\u{0}\(trimmed)".utf8)).prefix(32)
        let path = "\(options.resultsDirectory)/\(format)/\(name).\(format)"
        let data: Data
        if let existing = FileManager.default.contents(atPath: path) {
            data = existing
        } else {
            let wav = try synthesizer.wav(for: trimmed)
            data = format == "mp3" ? try synthesizer.mp3(fromWAV: wav) : wav
            try atomicWrite(data, to: path)
            enforceCap()
        }
        let elapsed = ContinuousClock.now - started
        return [
            "url": "tts/\(format)/\(name).\(format)", "sha256": SHA256Digest.hex(Array(data)), "bytes": data.count,
            "duration_ms": Int(
                elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000),
            "engine": synthesizer.engine,
        ]
    }

    private func atomicWrite(_ data: Data, to path: String) throws {
        let temporary = path + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        guard FileManager.default.createFile(atPath: temporary, contents: data) else {
            throw BackendError("cannot write \(temporary)")
        }
        guard rename(temporary, path) == 0 else {
            unlink(temporary)
            throw BackendError("cannot rename into \(path)")
        }
    }

    /// Oldest results go first once the directory is over its size cap.
    private func enforceCap() {
        var files: [(path: String, size: Int, modified: Date)] = []
        for format in ["wav", "mp3"] {
            let dir = "\(options.resultsDirectory)/\(format)"
            for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] where !name.contains(".tmp-")
            {
                let path = "\(dir)/\(name)"
                guard let attributes = try? FileManager.default.attributesOfItem(atPath: path) else { continue }
                files.append(
                    (path, (attributes[.size] as? Int) ?? 0, (attributes[.modificationDate] as? Date) ?? .distantPast))
            }
        }
        var total = files.reduce(0) { $0 + $1.size }
        for file in files.sorted(by: { $0.modified < $1.modified }) where total > options.resultsMaxBytes {
            if unlink(file.path) == 0 { total -= file.size }
        }
    }
}

/// Speech: espeak-ng when installed (real speech), else a built-in deterministic synthesizer.
struct Synthesizer: Sendable {
    let espeak: String?
    let lame: String?

    init() {
        espeak = Self.which("espeak-ng")
        lame = Self.which("lame")
    }

    /// "espeak-ng", or "builtin-tones": a tone per character, documented in the README.
    var engine: String { espeak != nil ? "espeak-ng" : "builtin-tones" }

    static func which(_ name: String) -> String? {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let path = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }

    func wav(for text: String) throws -> Data {
        if let espeak {
            let output = try run(espeak, ["--stdout", "--", text])
            if output.count > 44 { return output }
        }
        return Self.builtinTones(text)
    }

    func mp3(fromWAV wav: Data) throws -> Data {
        guard let lame else { throw BackendError("lame is not installed") }
        return try run(lame, ["--quiet", "-", "-"], input: wav)
    }

    private func run(_ executable: String, _ arguments: [String], input: Data? = nil) throws -> Data {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let out = Pipe()
        let inPipe = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        process.standardInput = input == nil ? FileHandle.nullDevice : inPipe
        try process.run()
        if let input {
            DispatchQueue.global().async {
                inPipe.fileHandleForWriting.write(input)
                try? inPipe.fileHandleForWriting.close()
            }
        }
        let timer = DispatchWorkItem { if process.isRunning { process.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + 20, execute: timer)
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        timer.cancel()
        guard process.terminationStatus == 0 else {
            throw BackendError(
                "\((executable as NSString).lastPathComponent) failed (status \(process.terminationStatus))")
        }
        return data
    }

    /// 16 kHz mono 16-bit PCM: 70 ms per character at a pitch derived from it, silence for spaces,
    /// with 5 ms fades. Deterministic: the same text gives the same bytes.
    static func builtinTones(_ text: String) -> Data {
        let rate = 16_000
        let perCharacter = rate * 70 / 1000
        let fade = rate * 5 / 1000
        var samples: [Int16] = []
        samples.reserveCapacity(text.unicodeScalars.count * perCharacter)
        for scalar in text.unicodeScalars.prefix(2000) {
            let silent = scalar == " " || scalar == "\n"
            let frequency = 220.0 + Double(scalar.value % 48) * 15.0
            for index in 0..<perCharacter {
                guard !silent else {
                    samples.append(0)
                    continue
                }
                let envelope = Double(min(index, perCharacter - 1 - index, fade)) / Double(fade)
                let value = sin(2 * Double.pi * frequency * Double(index) / Double(rate)) * 0.3 * min(1, envelope)
                samples.append(Int16(value * Double(Int16.max)))
            }
        }
        var data = Data()
        func append<T: FixedWidthInteger>(_ value: T) {
            withUnsafeBytes(of: value.littleEndian) { data.append(contentsOf: $0) }
        }
        let payload = samples.count * 2
        data.append(contentsOf: Array("RIFF".utf8))
        append(UInt32(36 + payload))
        data.append(contentsOf: Array("WAVEfmt ".utf8))
        append(UInt32(16))
        append(UInt16(1))
        append(UInt16(1))
        append(UInt32(rate))
        append(UInt32(rate * 2))
        append(UInt16(2))
        append(UInt16(16))
        data.append(contentsOf: Array("data".utf8))
        append(UInt32(payload))
        for sample in samples { append(sample) }
        return data
    }
}

enum SHA256Digest {
    static func hex(_ bytes: [UInt8]) -> String {
        var digest = [UInt8](repeating: 0, count: 32)
        bytes.withUnsafeBufferPointer { buffer in
            _ = SHA256(buffer.baseAddress, buffer.count, &digest)
        }
        return digest.map { String(format: "%02x", $0) }.joined()
    }
}

/// Plain HTTP on the WebSocket service: `/healthz`, and 404 for everything else.
final class PlainHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    private var head: HTTPRequestHead?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): self.head = head
        case .body: break
        case .end:
            guard let head else { return }
            let healthy = head.uri == "/healthz"
            let body = healthy ? "ok\n" : "not found\n"
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "text/plain")
            headers.add(name: "Content-Length", value: String(body.utf8.count))
            context.write(
                wrapOutboundOut(
                    .head(HTTPResponseHead(version: head.version, status: healthy ? .ok : .notFound, headers: headers))),
                promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
            let keepAlive = head.isKeepAlive
            context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
                if !keepAlive { context.close(promise: nil) }
            }
            self.head = nil
        }
    }
}

/// One TTS WebSocket connection: JSON requests in text frames, ping/pong, close handshake,
/// a per-connection rate limit and the idle timeout.
final class TTSWebSocketHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    let service: WebSocketTTSService
    private var fragments = ByteBuffer()
    private var fragmentedText = false
    private var windowStart = NIODeadline.now()
    private var windowCount = 0
    private var strikes = 0
    private var closing = false

    init(service: WebSocketTTSService) {
        self.service = service
    }

    func handlerAdded(context: ChannelHandlerContext) {
        service.register(context.channel)
    }

    func channelInactive(context: ChannelHandlerContext) {
        service.unregister(context.channel)
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .ping:
            var payload = frame.unmaskedData
            let pong = WebSocketFrame(fin: true, opcode: .pong, data: payload.readSlice(length: payload.readableBytes)!)
            context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
        case .connectionClose:
            // Echo the peer's code, then close (RFC 6455 §5.5.1).
            var payload = frame.unmaskedData
            let code = payload.readWebSocketErrorCode() ?? .normalClosure
            close(context: context, code: code)
        case .text:
            fragmentedText = !frame.fin
            fragments.clear()
            var data = frame.unmaskedData
            fragments.writeBuffer(&data)
            if frame.fin { handleMessage(context: context) }
        case .continuation where fragmentedText:
            var data = frame.unmaskedData
            if fragments.readableBytes + data.readableBytes > service.options.maxMessageBytes {
                return close(context: context, code: .messageTooLarge)
            }
            fragments.writeBuffer(&data)
            if frame.fin {
                fragmentedText = false
                handleMessage(context: context)
            }
        case .binary:
            reply(context: context, ["id": NSNull(), "error": "send JSON in text frames"])
        case .pong, .continuation:
            break
        default:
            close(context: context, code: .protocolError)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            close(context: context, code: .normalClosure)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func handleMessage(context: ChannelHandlerContext) {
        let now = NIODeadline.now()
        if now - windowStart >= .seconds(1) {
            windowStart = now
            windowCount = 0
        }
        windowCount += 1
        let text = String(buffer: fragments)
        let json = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
        let id: Any = json?["id"] ?? NSNull()
        if windowCount > service.options.messagesPerSecond {
            strikes += 1
            if strikes > 3 { return close(context: context, code: .policyViolation) }
            return reply(
                context: context,
                ["id": id, "error": "rate limit: at most \(service.options.messagesPerSecond) messages per second"])
        }
        strikes = 0
        guard let json else { return reply(context: context, ["id": NSNull(), "error": "invalid JSON"]) }
        guard let requestText = json["text"] as? String else {
            return reply(context: context, ["id": id, "error": "missing \"text\""])
        }
        let format = (json["format"] as? String) ?? "wav"
        let service = self.service
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let idText = (id as? String) ?? (id as? NSNumber)?.stringValue
        NIOThreadPool.singleton.runIfActive(eventLoop: context.eventLoop) { () -> [String: String] in
            var fields: [String: Any]
            do {
                fields = try service.synthesize(text: requestText, format: format)
            } catch {
                fields = ["error": "\(error)"]
            }
            // Carried across the thread hop as JSON text.
            return [
                "json": String(decoding: (try? JSONSerialization.data(withJSONObject: fields)) ?? Data(), as: UTF8.self)
            ]
        }.whenComplete { result in
            let (handler, context) = bound.value
            var fields: [String: Any] = [:]
            if case .success(let wrapped) = result, let data = wrapped["json"]?.data(using: .utf8),
                let decoded = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
            {
                fields = decoded
            } else {
                fields = ["error": "synthesis failed"]
            }
            fields["id"] = idText.map { $0 as Any } ?? NSNull()
            handler.reply(context: context, fields)
        }
    }

    private func reply(context: ChannelHandlerContext, _ fields: [String: Any]) {
        guard !closing, context.channel.isActive,
            let data = try? JSONSerialization.data(
                withJSONObject: fields, options: [.sortedKeys, .withoutEscapingSlashes])
        else { return }
        let frame = WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(bytes: data))
        context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
    }

    private func close(context: ChannelHandlerContext, code: WebSocketErrorCode) {
        guard !closing else { return }
        closing = true
        var payload = context.channel.allocator.buffer(capacity: 2)
        payload.write(webSocketErrorCode: code)
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: payload)))
            .assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }
}

@available(*, unavailable)
extension TTSWebSocketHandler: Sendable {}
