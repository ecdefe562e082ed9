public import Crypto
public import Foundation

/// The account key and the JSON Web Signatures RFC 8555 wraps every request in: ES256 over
/// `protected.payload`, flattened JSON serialization (§6.2), the key as a JWK until the account
/// exists and as its URL (`kid`) after. Swift Crypto signs; this file only frames the JSON.
public struct ACMEAccountKey: Sendable {
    public let privateKey: P256.Signing.PrivateKey

    public init(_ privateKey: P256.Signing.PrivateKey) {
        self.privateKey = privateKey
    }

    /// The public key as a JWK (RFC 7518 §6.2.1): members in the lexicographic order RFC 7638's
    /// thumbprint requires, so the same text serves both.
    public var jwkJSON: String {
        let point = privateKey.publicKey.x963Representation  // 0x04 || X || Y
        let x = Base64URL.encode(point.dropFirst().prefix(32))
        let y = Base64URL.encode(point.suffix(32))
        return #"{"crv":"P-256","kty":"EC","x":"\#(x)","y":"\#(y)"}"#
    }

    /// RFC 7638 thumbprint: base64url(SHA-256(JWK)); the second half of every key authorization.
    public var thumbprint: String {
        Base64URL.encode(SHA256.hash(data: Data(jwkJSON.utf8)))
    }

    /// `token.thumbprint` (RFC 8555 §8.1).
    public func keyAuthorization(token: String) -> String {
        "\(token).\(thumbprint)"
    }

    public enum Identity: Sendable, Equatable {
        /// newAccount (and revocation by certificate key): the key itself.
        case jwk
        /// Every other request: the account URL.
        case kid(String)
    }

    /// The flattened JWS for a POST to `url`. `payload` nil is POST-as-GET (an empty payload).
    public func sign(payload: Data?, url: String, nonce: String, identity: Identity) throws -> Data {
        let identityMember: String
        switch identity {
        case .jwk: identityMember = #""jwk":\#(jwkJSON)"#
        case .kid(let accountURL): identityMember = #""kid":\#(try Self.jsonString(accountURL))"#
        }
        let protected =
            #"{"alg":"ES256",\#(identityMember),"nonce":\#(try Self.jsonString(nonce)),"url":\#(try Self.jsonString(url))}"#
        let body = try Self.flattened(protected: protected, payload: payload ?? Data()) { input in
            try privateKey.signature(for: input).rawRepresentation
        }
        return Data(body.utf8)
    }

    /// RFC 8555 §7.3.4: the account key (its JWK as payload) signed with HS256 by the CA's MAC
    /// key, naming the CA's key id and the newAccount URL; goes into newAccount's payload.
    public func externalAccountBinding(keyID: String, macKey: [UInt8], url: String) throws -> String {
        let protected = #"{"alg":"HS256","kid":\#(try Self.jsonString(keyID)),"url":\#(try Self.jsonString(url))}"#
        return Self.flattened(protected: protected, payload: Data(jwkJSON.utf8)) { input in
            Data(HMAC<SHA256>.authenticationCode(for: input, using: SymmetricKey(data: macKey)))
        }
    }

    /// The flattened JSON serialization (RFC 7515 §7.2.2) of `payload` under the `protected`
    /// header, signed by `sign` over `BASE64URL(protected).BASE64URL(payload)`.
    private static func flattened(protected: String, payload: Data, sign: (Data) throws -> Data) rethrows -> String {
        let protected64 = Base64URL.encode(Data(protected.utf8))
        let payload64 = Base64URL.encode(payload)
        let signature64 = Base64URL.encode(try sign(Data("\(protected64).\(payload64)".utf8)))
        return #"{"protected":"\#(protected64)","payload":"\#(payload64)","signature":"\#(signature64)"}"#
    }

    /// A JSON string literal (quotes and escapes) for `text`.
    static func jsonString(_ text: String) throws -> String {
        let data = try JSONSerialization.data(withJSONObject: [text], options: [.withoutEscapingSlashes])
        return String(decoding: data.dropFirst().dropLast(), as: UTF8.self)
    }
}

/// Base64url without padding (RFC 7515 §2).
public enum Base64URL {
    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        Data(bytes).base64EncodedString()
            .replacing("+", with: "-").replacing("/", with: "_").replacing("=", with: "")
    }

    public static func decode(_ text: String) -> Data? {
        var base64 = text.replacing("-", with: "+").replacing("_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64)
    }
}
