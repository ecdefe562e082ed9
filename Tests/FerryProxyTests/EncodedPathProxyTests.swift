import FerryConfig
import Foundation
import Testing

@testable import FerryProxy

/// Issue 21, item 1, end to end: Python's `http.server` (which decodes `%2F` before resolving dot
/// segments) behind Ferry, `/forbidden` answered 403 by Ferry and only `/files/` proxied. Before
/// the fix, `/files/..%2Fforbidden` and `/files/..%2Fsecret` returned those files with 200.
@Suite struct EncodedPathProxyTests {
    /// Every spelling of "one level up, then the forbidden file", on the proxied route and on the
    /// deny route's neighbour.
    static let escapes = [
        "/files/..%2Fforbidden", "/files/..%2fforbidden", "/files/%2e%2e%2fforbidden", "/files/%2E%2E%2Fsecret",
        "/files/..%5Csecret", "/files/..%252Fsecret", "/files/%252e%252e%252fsecret", "/files/%C0%AE%C0%AE/secret",
        "/files/%C0%AE%C0%AE%C0%AFsecret", "/files/a/..%2F..%2Fsecret",
        "/files/..%2F..%2F..%2Fetc/passwd", "/x/..%2Fforbidden", "/x/%2e%2e%2fforbidden", "/forbidden%2F",
    ]

    @Test func encodedEscapesAreRefusedBeforeTheBackendSeesThem() async throws {
        guard PythonBackend.available else { return }
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-enc-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        try FileManager.default.createDirectory(
            at: root.appendingPathComponent("files"), withIntermediateDirectories: true)
        try Data("public file\n".utf8).write(to: root.appendingPathComponent("files/a.txt"))
        try Data("FORBIDDEN CONTENT\n".utf8).write(to: root.appendingPathComponent("forbidden"))
        try Data("SECRET CONTENT\n".utf8).write(to: root.appendingPathComponent("secret"))
        let backend = try PythonBackend(script: "decoding_file_server.py", arguments: [root.path])
        let proxy = try await ProxyHarness(
            backendPort: backend.port,
            routes: [
                RouteConfiguration(path: "/files/", action: .proxy(backend: "app")),
                RouteConfiguration(path: "/forbidden", action: .respond(status: 403, body: "no\n")),
                RouteConfiguration(path: "/", action: .respond(status: 404, body: nil)),
            ])
        defer { Task { await proxy.stop() } }

        func get(_ path: String) throws -> String {
            try rawExchange(port: proxy.port, "GET \(path) HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        }
        // The backend really serves files, and Ferry really denies the plain path.
        #expect(try get("/files/a.txt").hasPrefix("HTTP/1.1 200"))
        #expect(try get("/forbidden").hasPrefix("HTTP/1.1 403"))
        #expect(try get("/files/../forbidden").hasPrefix("HTTP/1.1 403"))
        // Dot segments Ferry resolves itself (plain or %2e) route where they lead: Ferry's 404.
        #expect(try get("/files/.%2e/secret").hasPrefix("HTTP/1.1 404"))
        for path in Self.escapes {
            let response = try get(path)
            #expect(response.hasPrefix("HTTP/1.1 400"), "\(path): \(response.debugDescription)")
            #expect(!response.contains("CONTENT"), "\(path) leaked a file")
        }
    }
}
