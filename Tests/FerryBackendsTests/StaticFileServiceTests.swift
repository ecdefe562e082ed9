import Foundation
import Logging
import NIOCore
import NIOPosix
import Testing

@testable import FerryBackends

/// A root with files, a dotfile, a subdirectory with an index, a symlink inside and one escaping,
/// and a secret next to (outside) the root.
final class StaticRoot: @unchecked Sendable {
    let base: URL
    var root: String { base.appendingPathComponent("root").path }

    init() throws {
        base = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-static-\(UUID().uuidString)")
        let fm = FileManager.default
        try fm.createDirectory(
            atPath: base.appendingPathComponent("root/tts/wav").path, withIntermediateDirectories: true)
        try fm.createDirectory(atPath: base.appendingPathComponent("root/docs").path, withIntermediateDirectories: true)
        try "RIFF....WAVE".write(
            toFile: base.appendingPathComponent("root/tts/wav/a.wav").path, atomically: true, encoding: .utf8)
        try "<html>docs</html>".write(
            toFile: base.appendingPathComponent("root/docs/index.html").path, atomically: true, encoding: .utf8)
        try "hidden".write(toFile: base.appendingPathComponent("root/.env").path, atomically: true, encoding: .utf8)
        try "0123456789".write(
            toFile: base.appendingPathComponent("root/digits.txt").path, atomically: true, encoding: .utf8)
        try "TOP SECRET".write(
            toFile: base.appendingPathComponent("secret.txt").path, atomically: true, encoding: .utf8)
        try fm.createSymbolicLink(
            atPath: base.appendingPathComponent("root/escape").path,
            withDestinationPath: base.appendingPathComponent("secret.txt").path)
        try fm.createSymbolicLink(
            atPath: base.appendingPathComponent("root/inside.wav").path,
            withDestinationPath: base.appendingPathComponent("root/tts/wav/a.wav").path)
    }

    deinit { try? FileManager.default.removeItem(at: base) }
}

@Suite struct StaticFileServiceTests {
    func service(_ root: StaticRoot, demo: Bool = false) throws -> StaticFileService {
        try StaticFileService(options: .init(root: root.root, demoPage: demo), logger: Logger(label: "test"))
    }

    @Test func servesFilesAndDirectoryIndexes() throws {
        let root = try StaticRoot()
        let files = try service(root)
        guard case .file(let path) = files.resolve("/tts/wav/a.wav") else {
            Issue.record("not served")
            return
        }
        #expect(path.hasSuffix("/root/tts/wav/a.wav"))
        guard case .file(let index) = files.resolve("/docs/") else {
            Issue.record("no index")
            return
        }
        #expect(index.hasSuffix("/docs/index.html"))
        guard case .file = files.resolve("/inside.wav") else {
            Issue.record("symlink inside the root refused")
            return
        }
    }

    /// At least 15 hostile paths: all refused, nothing outside the root readable.
    @Test(arguments: [
        "/../secret.txt", "/%2e%2e/secret.txt", "/%2E%2E/secret.txt", "/tts/../../secret.txt",
        "/tts/%2e%2e/%2e%2e/secret.txt",
        "/..%2fsecret.txt", "/%2e%2e%2fsecret.txt", "/escape", "/.env", "/%2eenv", "/tts/wav/a.wav%00.txt",
        "/..\\secret.txt", "/%5c..%5csecret.txt", "//etc/passwd", "/etc/passwd", "/tts/wav/", "/docs/../../secret.txt",
        "/./../secret.txt", "relative.txt", "/%zz",
    ])
    func hostilePathsAreRefused(path: String) throws {
        let root = try StaticRoot()
        let result = try service(root).resolve(path)
        switch result {
        case .file(let resolved):
            #expect(resolved.hasPrefix(root.root + "/"), "\(path) escaped to \(resolved)")
            #expect(!resolved.hasSuffix("secret.txt"))
            #expect(!resolved.hasSuffix(".env"))
            Issue.record("\(path) should not be served, got \(resolved)")
        case .notFound, .badRequest:
            break
        case .demoPage, .health:
            Issue.record("\(path) resolved to \(result)")
        }
    }

    @Test func demoPageAndHealth() throws {
        let root = try StaticRoot()
        #expect(try service(root, demo: true).resolve("/") == .demoPage)
        #expect(try service(root, demo: false).resolve("/") == .notFound)
        #expect(try service(root).resolve("/healthz") == .health)
        #expect(DemoPage.html.contains("/tts-ws/tts"))
        #expect(DemoPage.html.contains("id=\"verified\""))
    }

    @Test func ranges() {
        #expect(ByteRange.parse(nil, size: 10) == .none)
        #expect(ByteRange.parse("bytes=0-3", size: 10) == .range(0...3))
        #expect(ByteRange.parse("bytes=5-", size: 10) == .range(5...9))
        #expect(ByteRange.parse("bytes=-3", size: 10) == .range(7...9))
        #expect(ByteRange.parse("bytes=8-100", size: 10) == .range(8...9))
        #expect(ByteRange.parse("bytes=10-", size: 10) == .unsatisfiable)
        #expect(ByteRange.parse("bytes=5-2", size: 10) == .unsatisfiable)
        #expect(ByteRange.parse("bytes=0-1,3-4", size: 10) == .none)
    }

    @Test func contentTypesAndDates() {
        #expect(StaticFileService.contentType(for: "/a/b.wav") == "audio/wav")
        #expect(StaticFileService.contentType(for: "/a/b.MP3") == "audio/mpeg")
        #expect(StaticFileService.contentType(for: "/a/b.unknown") == "application/octet-stream")
        #expect(HTTPDate.format(0) == "Thu, 01 Jan 1970 00:00:00 GMT")
        #expect(HTTPDate.parse("Thu, 01 Jan 1970 00:01:40 GMT") == 100)
    }
}

@Suite struct SynthesizerTests {
    @Test func builtinTonesAreDeterministicPCM() {
        let first = Synthesizer.builtinTones("hello ferry")
        let second = Synthesizer.builtinTones("hello ferry")
        #expect(first == second)
        #expect(first.prefix(4) == Data("RIFF".utf8))
        #expect(first.count == 44 + 11 * (16_000 * 70 / 1000) * 2)
        #expect(Synthesizer.builtinTones("other") != first)
    }

    @Test func sha256OfKnownInput() {
        #expect(
            SHA256Digest.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }
}
