import Foundation
public import Logging
public import NIOCore
import NIOHTTP1
import NIOPosix

/// `ferry backend static`: files from one directory, the way Tornado's StaticFileHandler serves
/// the seed's results, done carefully: ETag/Last-Modified with 304, single ranges, HEAD,
/// Cache-Control, zero-copy transfer (sendfile through `FileRegion`), and paths that cannot
/// leave the root (decoded, normalized, symlinks resolved and checked).
public final class StaticFileService: Sendable {
    public struct Options: Sendable {
        public var root: String
        public var cacheControl: String
        public var index: String?
        public var demoPage: Bool

        public init(
            root: String, cacheControl: String = "public, max-age=3600", index: String? = "index.html",
            demoPage: Bool = false
        ) {
            self.root = root
            self.cacheControl = cacheControl
            self.index = index
            self.demoPage = demoPage
        }
    }

    let options: Options
    let realRoot: String
    let logger: Logger

    public init(options: Options, logger: Logger) throws {
        self.options = options
        self.logger = logger
        try FileManager.default.createDirectory(atPath: options.root, withIntermediateDirectories: true)
        guard let resolved = realpath(options.root, nil) else {
            throw BackendError("cannot resolve root \(options.root)")
        }
        realRoot = String(cString: resolved)
        free(resolved)
    }

    /// Binds and serves until the returned channel closes.
    public func start(address: BackendListenAddress, group: any EventLoopGroup) async throws -> any Channel {
        let service = self
        return try await address.bind(
            ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                        try channel.pipeline.syncOperations.addHandler(StaticFileHandler(service: service))
                    }
                })
    }

    public enum Resolution: Equatable, Sendable {
        case file(path: String)
        case demoPage
        case health
        case notFound
        case badRequest
    }

    /// Maps a request target to a file under the root, or refuses it. Safe by construction:
    /// percent-decoding happens once, then every segment is checked (no `..`, no dotfiles, no NUL,
    /// no backslashes), then the real path (symlinks resolved) must still be under the root.
    public func resolve(_ uri: String) -> Resolution {
        let path =
            uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        if path == "/healthz" { return .health }
        guard path.hasPrefix("/") else { return .badRequest }
        guard let decoded = path.removingPercentEncoding else { return .badRequest }
        if decoded.contains("\0") || decoded.contains("\\") { return .badRequest }
        if options.demoPage && (decoded == "/" || decoded == "/index.html") { return .demoPage }
        var segments: [Substring] = []
        for segment in decoded.split(separator: "/", omittingEmptySubsequences: true) {
            if segment == "." || segment == ".." || segment.hasPrefix(".") { return .notFound }
            segments.append(segment)
        }
        var candidate = realRoot + "/" + segments.joined(separator: "/")
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: candidate, isDirectory: &isDirectory) else { return .notFound }
        if isDirectory.boolValue {
            guard let index = options.index else { return .notFound }
            candidate += "/" + index
        }
        guard let resolved = realpath(candidate, nil) else { return .notFound }
        defer { free(resolved) }
        let real = String(cString: resolved)
        guard real.hasPrefix(realRoot + "/") else { return .notFound }
        var status = stat()
        guard stat(real, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG else { return .notFound }
        return .file(path: real)
    }

    static let contentTypes: [String: String] = [
        "html": "text/html; charset=utf-8", "htm": "text/html; charset=utf-8", "css": "text/css; charset=utf-8",
        "js": "text/javascript; charset=utf-8", "json": "application/json", "txt": "text/plain; charset=utf-8",
        "wav": "audio/wav", "mp3": "audio/mpeg", "ogg": "audio/ogg", "png": "image/png", "jpg": "image/jpeg",
        "jpeg": "image/jpeg", "gif": "image/gif", "svg": "image/svg+xml", "ico": "image/x-icon",
        "wasm": "application/wasm",
        "pdf": "application/pdf", "xml": "application/xml", "bin": "application/octet-stream",
    ]

    static func contentType(for path: String) -> String {
        let ext = (path as NSString).pathExtension.lowercased()
        return contentTypes[ext] ?? "application/octet-stream"
    }
}

/// A request's byte range (RFC 9110 §14): one range only; several are answered with the whole file.
enum ByteRange: Equatable {
    case none
    case range(ClosedRange<Int>)
    case unsatisfiable

    static func parse(_ header: String?, size: Int) -> ByteRange {
        guard let header, header.hasPrefix("bytes=") else { return .none }
        let spec = header.dropFirst("bytes=".count)
        if spec.contains(",") { return .none }
        let parts = spec.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { return .none }
        if parts[0].isEmpty {
            guard let suffix = Int(parts[1]), suffix > 0 else { return .unsatisfiable }
            guard size > 0 else { return .unsatisfiable }
            return .range(max(0, size - suffix)...(size - 1))
        }
        guard let start = Int(parts[0]) else { return .none }
        guard start < size else { return .unsatisfiable }
        let end = parts[1].isEmpty ? size - 1 : min(Int(parts[1]) ?? (size - 1), size - 1)
        guard end >= start else { return .unsatisfiable }
        return .range(start...end)
    }
}

final class StaticFileHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let service: StaticFileService
    private var head: HTTPRequestHead?

    init(service: StaticFileService) {
        self.service = service
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body:
            break
        case .end:
            if let head { respond(to: head, context: context) }
            head = nil
        }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        guard head.method == .GET || head.method == .HEAD else {
            var headers = HTTPHeaders()
            headers.add(name: "Allow", value: "GET, HEAD")
            return simple(context, head, .methodNotAllowed, "method not allowed\n", headers)
        }
        switch service.resolve(head.uri) {
        case .badRequest:
            simple(context, head, .badRequest, "bad request\n")
        case .notFound:
            simple(context, head, .notFound, "not found\n")
        case .health:
            simple(context, head, .ok, "ok\n")
        case .demoPage:
            var headers = HTTPHeaders()
            headers.add(name: "Cache-Control", value: "no-cache")
            simple(context, head, .ok, DemoPage.html, headers, contentType: "text/html; charset=utf-8")
        case .file(let path):
            serveFile(path, head: head, context: context)
        }
    }

    private func simple(
        _ context: ChannelHandlerContext, _ request: HTTPRequestHead, _ status: HTTPResponseStatus, _ body: String,
        _ extra: HTTPHeaders = HTTPHeaders(), contentType: String = "text/plain; charset=utf-8"
    ) {
        var headers = extra
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: String(body.utf8.count))
        if !request.isKeepAlive { headers.add(name: "Connection", value: "close") }
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: status, headers: headers))),
            promise: nil)
        if request.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
        }
        end(context, request)
    }

    private func end(_ context: ChannelHandlerContext, _ request: HTTPRequestHead) {
        let keepAlive = request.isKeepAlive
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            if !keepAlive { context.close(promise: nil) }
        }
    }

    private func serveFile(_ path: String, head request: HTTPRequestHead, context: ChannelHandlerContext) {
        let handle: NIOFileHandle
        do {
            handle = try NIOFileHandle(_deprecatedPath: path)
        } catch {
            return simple(context, request, .notFound, "not found\n")
        }
        var info = stat()
        guard fstat(try! handle.withUnsafeFileDescriptor { $0 }, &info) == 0 else {
            try? handle.close()
            return simple(context, request, .notFound, "not found\n")
        }
        let size = Int(info.st_size)
        let modified = Int(info.st_mtim.tv_sec)
        let etag = "\"\(String(modified, radix: 16))-\(String(size, radix: 16))\""
        let lastModified = HTTPDate.format(modified)
        var headers = HTTPHeaders()
        headers.add(name: "ETag", value: etag)
        headers.add(name: "Last-Modified", value: lastModified)
        headers.add(name: "Cache-Control", value: service.options.cacheControl)
        headers.add(name: "Accept-Ranges", value: "bytes")
        if !request.isKeepAlive { headers.add(name: "Connection", value: "close") }

        let notModified: Bool
        if let match = request.headers.first(name: "if-none-match") {
            notModified =
                match == "*" || match.split(separator: ",").contains { $0.trimmingCharacters(in: .whitespaces) == etag }
        } else if let since = request.headers.first(name: "if-modified-since"), let date = HTTPDate.parse(since) {
            notModified = modified <= date
        } else {
            notModified = false
        }
        if notModified {
            try? handle.close()
            context.write(
                wrapOutboundOut(
                    .head(HTTPResponseHead(version: request.version, status: .notModified, headers: headers))),
                promise: nil)
            return end(context, request)
        }
        var status = HTTPResponseStatus.ok
        var range = 0...(max(size, 1) - 1)
        switch ByteRange.parse(request.headers.first(name: "range"), size: size) {
        case .none:
            break
        case .range(let requested):
            status = .partialContent
            range = requested
            headers.add(name: "Content-Range", value: "bytes \(requested.lowerBound)-\(requested.upperBound)/\(size)")
        case .unsatisfiable:
            try? handle.close()
            headers.add(name: "Content-Range", value: "bytes */\(size)")
            headers.add(name: "Content-Length", value: "0")
            context.write(
                wrapOutboundOut(
                    .head(HTTPResponseHead(version: request.version, status: .rangeNotSatisfiable, headers: headers))),
                promise: nil)
            return end(context, request)
        }
        let length = size == 0 ? 0 : range.count
        headers.add(name: "Content-Type", value: StaticFileService.contentType(for: path))
        headers.add(name: "Content-Length", value: String(length))
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: status, headers: headers))),
            promise: nil)
        if request.method == .HEAD || length == 0 {
            try? handle.close()
            return end(context, request)
        }
        // Zero-copy: the kernel sends the file (sendfile) without it passing through user space.
        let region = FileRegion(fileHandle: handle, readerIndex: range.lowerBound, endIndex: range.upperBound + 1)
        context.write(wrapOutboundOut(.body(.fileRegion(region)))).whenComplete { _ in try? handle.close() }
        end(context, request)
    }
}

@available(*, unavailable)
extension StaticFileHandler: Sendable {}

/// IMF-fixdate (RFC 9110 §5.6.7) formatting and parsing.
enum HTTPDate {
    static func format(_ seconds: Int) -> String {
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        var buffer = [CChar](repeating: 0, count: 64)
        let count = strftime(&buffer, buffer.count, "%a, %d %b %Y %H:%M:%S GMT", &parts)
        return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func parse(_ text: String) -> Int? {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return formatter.date(from: text).map { Int($0.timeIntervalSince1970) }
    }
}

public struct BackendError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Where a built-in backend listens: TCP (IPv4/IPv6) or a Unix socket.
public enum BackendListenAddress: Sendable, CustomStringConvertible {
    case inet(host: String, port: Int)
    case unix(path: String)

    /// Parses `host:port`, `[v6]:port` or `unix:/path`.
    public init(parsing text: String) throws {
        if text.hasPrefix("unix:") {
            self = .unix(path: String(text.dropFirst(5)))
            return
        }
        if text.hasPrefix("["), let close = text.firstIndex(of: "]"),
            let port = Int(text[text.index(close, offsetBy: 2)...])
        {
            self = .inet(host: String(text[text.index(after: text.startIndex)..<close]), port: port)
            return
        }
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]) else {
            throw BackendError("'\(text)' is not host:port, [v6]:port or unix:/path")
        }
        self = .inet(host: String(text[..<colon]), port: port)
    }

    public var description: String {
        switch self {
        case .inet(let host, let port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .unix(let path): "unix:\(path)"
        }
    }

    func bind(_ bootstrap: ServerBootstrap) async throws -> any Channel {
        switch self {
        case .inet(let host, let port):
            return try await bootstrap.bind(host: host, port: port).get()
        case .unix(let path):
            unlink(path)
            return try await bootstrap.bind(unixDomainSocketPath: path).get()
        }
    }
}
