import Crypto
import Foundation

/// The key and accept values of a WebSocket opening handshake (RFC 6455 §4), for the upgrades
/// Ferry makes itself: a WebSocket over HTTP/2 (RFC 8441) reaches its HTTP/1.1 backend through an
/// `Upgrade: websocket` request whose key Ferry chooses and whose answer it checks.
enum WebSocketHandshake {
    static let guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    /// 16 random bytes, base64.
    static func makeKey() -> String {
        var generator = SystemRandomNumberGenerator()
        return Data((0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) }).base64EncodedString()
    }

    /// The `Sec-WebSocket-Accept` a server must answer to `key`: base64(SHA-1(key + GUID)).
    static func accept(forKey key: String) -> String {
        Data(Insecure.SHA1.hash(data: Data((key + guid).utf8))).base64EncodedString()
    }
}
