import FerryConfig
import Foundation
import NIOCore
import NIOHTTP1

/// A plain-HTTP listener with `redirect_to_https`: every request gets 308 to the same host and
/// target over HTTPS, and nothing reaches a backend. `/.well-known/acme-challenge/` is kept for
/// the ACME client's HTTP-01 tokens: such paths are answered from the challenge directory or 404,
/// never redirected.
extension Exchange {
    static let acmeChallengePrefix = "/.well-known/acme-challenge/"

    /// HTTP-01 (RFC 8555 §8.3) on a plain listener: the key authorization the master wrote for
    /// the token, as text/plain; 404 for a token it has not (or no longer) published. Only a
    /// base64url token becomes a file name.
    func answerACMEChallenge(directory: String?) {
        let token = request.uri.dropFirst(Self.acmeChallengePrefix.count)
        guard let directory, !token.isEmpty, token.utf8.allSatisfy(Self.isBase64URL),
            let fd = Optional(open("\(directory)/http-01/\(token)", O_RDONLY | O_CLOEXEC)), fd >= 0
        else {
            respondLocally(status: .notFound, body: "ferry: no such challenge token\n", close: false)
            return
        }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 1024)
        let count = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0 else {
            respondLocally(status: .notFound, body: "ferry: no such challenge token\n", close: false)
            return
        }
        respondLocally(status: .ok, body: String(decoding: bytes[..<count], as: UTF8.self), close: false)
    }

    private static func isBase64URL(_ byte: UInt8) -> Bool {
        (byte >= 0x30 && byte <= 0x39) || (byte | 0x20 >= 0x61 && byte | 0x20 <= 0x7A) || byte == 0x2D || byte == 0x5F
    }

    func redirectToHTTPS(port: Int) {
        let uri = request.uri
        guard uri.hasPrefix("/"), let raw = request.first(name: "Host"), let host = HostName.normalize(raw),
            !host.hasPrefix("*"), HostName.isValidPattern(host)
        else {
            respondLocally(status: .badRequest, body: "ferry: a request without a valid Host\n", close: false)
            return
        }
        let location = "https://\(host)\(port == 443 ? "" : ":\(port)")\(uri)"
        var headers = HTTPHeaders()
        headers.add(name: "Location", value: location)
        respondLocally(
            status: .permanentRedirect, body: "ferry: this site is served over HTTPS: \(location)\n", close: false,
            extraHeaders: headers)
    }
}
