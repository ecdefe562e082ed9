import Crypto
import Foundation
import Testing

@testable import FerryACME

@Suite struct ACMEJWSTests {
    /// A published P-256 JWK (d, x, y; a JOSE library's test fixture): the coordinates Ferry
    /// derives from d must be its x and y.
    static let knownKey = try! P256.Signing.PrivateKey(
        rawRepresentation: Base64URL.decode("ZmiwyVddp4E-mTQrzTvViyVU62Ruzshigi4ez05PNHE")!)

    @Test func theJWKIsRFC7638sCanonicalFormOfTheKey() throws {
        let key = ACMEAccountKey(Self.knownKey)
        let canonical =
            #"{"crv":"P-256","kty":"EC","x":"j7zqR6DpZvVCfQ1iSUgTzpaD9I9zOJ4nVuBgF2fIT2s","y":"J8yEDN--9GGlKS_wDAsPwSkcX1OjVwGRlV_PGwMEvPQ"}"#
        #expect(key.jwkJSON == canonical)
        #expect(key.thumbprint == Base64URL.encode(SHA256.hash(data: Data(canonical.utf8))))
        #expect(key.keyAuthorization(token: "tok-en_1") == "tok-en_1.\(key.thumbprint)")
    }

    /// The flattened JWS as a CA reads it: protected header members, payload, ES256 over
    /// `protected.payload` verifying with the account's public key.
    @Test func aSignedRequestVerifiesAndCarriesItsHeader() throws {
        let key = ACMEAccountKey(P256.Signing.PrivateKey())
        for (identity, payload) in [
            (ACMEAccountKey.Identity.jwk, Data(#"{"termsOfServiceAgreed":true}"#.utf8)),
            (.kid("https://ca.test/acct/7"), nil),
        ] {
            let body = try key.sign(
                payload: payload, url: "https://ca.test/new-\"acct\"", nonce: "n0nce", identity: identity)
            let jws = try #require(try JSONSerialization.jsonObject(with: body) as? [String: String])
            let protected64 = try #require(jws["protected"])
            let payload64 = try #require(jws["payload"])
            let protectedJSON = try #require(Base64URL.decode(protected64))
            let header = try #require(try JSONSerialization.jsonObject(with: protectedJSON) as? [String: Any])
            #expect(header["alg"] as? String == "ES256")
            #expect(header["nonce"] as? String == "n0nce")
            #expect(header["url"] as? String == "https://ca.test/new-\"acct\"")
            switch identity {
            case .jwk:
                #expect(header["kid"] == nil)
                #expect((header["jwk"] as? [String: String])?["kty"] == "EC")
                #expect(Base64URL.decode(payload64) == payload)
            case .kid(let url):
                #expect(header["jwk"] == nil && header["kid"] as? String == url)
                #expect(payload64 == "")  // POST-as-GET
            }
            let signature64 = try #require(jws["signature"])
            let signatureBytes = try #require(Base64URL.decode(signature64))
            let signature = try P256.Signing.ECDSASignature(rawRepresentation: signatureBytes)
            #expect(key.privateKey.publicKey.isValidSignature(signature, for: Data("\(protected64).\(payload64)".utf8)))
            #expect(!key.privateKey.publicKey.isValidSignature(signature, for: Data("\(protected64).x".utf8)))
        }
    }

    /// RFC 8555 §7.3.4: the account's JWK, HS256-signed with the CA's MAC key, naming its key id
    /// and the newAccount URL.
    @Test func theExternalAccountBindingIsTheJWKSignedWithTheMACKey() throws {
        let key = ACMEAccountKey(P256.Signing.PrivateKey())
        let mac = Array("a MAC key from the CA".utf8)
        let text = try key.externalAccountBinding(keyID: "kid-1", macKey: mac, url: "https://ca.test/new-account")
        let jws = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: String])
        let protected64 = try #require(jws["protected"])
        let payload64 = try #require(jws["payload"])
        let protectedJSON = try #require(Base64URL.decode(protected64))
        let header = try #require(try JSONSerialization.jsonObject(with: protectedJSON) as? [String: String])
        #expect(header == ["alg": "HS256", "kid": "kid-1", "url": "https://ca.test/new-account"])
        #expect(Base64URL.decode(payload64) == Data(key.jwkJSON.utf8))
        let expected = HMAC<SHA256>.authenticationCode(
            for: Data("\(protected64).\(payload64)".utf8), using: SymmetricKey(data: mac))
        #expect(jws["signature"] == Base64URL.encode(expected))
    }

    @Test func base64URLHasNoPaddingAndRoundTrips() {
        for length in 0..<40 {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 251) }
            let text = Base64URL.encode(bytes)
            #expect(!text.contains("=") && !text.contains("+") && !text.contains("/"))
            #expect(Base64URL.decode(text) == Data(bytes))
        }
    }
}
