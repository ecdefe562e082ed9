// swift-tools-version:6.0
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let nioCore = Target.Dependency.product(name: "NIOCore", package: "swift-nio")
let nioPosix = Target.Dependency.product(name: "NIOPosix", package: "swift-nio")
let nioHTTP1 = Target.Dependency.product(name: "NIOHTTP1", package: "swift-nio")
let nioWebSocket = Target.Dependency.product(name: "NIOWebSocket", package: "swift-nio")
let nioEmbedded = Target.Dependency.product(name: "NIOEmbedded", package: "swift-nio")
let nioConcurrencyHelpers = Target.Dependency.product(name: "NIOConcurrencyHelpers", package: "swift-nio")
let nioExtras = Target.Dependency.product(name: "NIOExtras", package: "swift-nio-extras")
let nioHTTP2 = Target.Dependency.product(name: "NIOHTTP2", package: "swift-nio-http2")
let nioHPACK = Target.Dependency.product(name: "NIOHPACK", package: "swift-nio-http2")
let crypto = Target.Dependency.product(name: "Crypto", package: "swift-crypto")
let logging = Target.Dependency.product(name: "Logging", package: "swift-log")
let x509 = Target.Dependency.product(name: "X509", package: "swift-certificates")
let asn1 = Target.Dependency.product(name: "SwiftASN1", package: "swift-asn1")
let httpClient = Target.Dependency.product(name: "AsyncHTTPClient", package: "async-http-client")
let nioSSL = Target.Dependency.product(name: "NIOSSL", package: "swift-nio-ssl")

let package = Package(
    name: "Ferry",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "ferry", targets: ["ferry"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-nio-http2", from: "1.46.0"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/LebJe/TOMLKit", exact: "0.6.0"),
    ],
    targets: [
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        .systemLibrary(
            name: "CSystemd",
            pkgConfig: "libsystemd",
            providers: [.apt(["libsystemd-dev"])]
        ),
        .target(
            name: "FerryConfig",
            dependencies: [.product(name: "TOMLKit", package: "TOMLKit")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FerryTLS",
            dependencies: ["COpenSSL", nioCore, nioConcurrencyHelpers, logging],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FerryProxy",
            dependencies: [
                "FerryConfig", nioCore, nioPosix, nioHTTP1, nioHTTP2, nioHPACK, nioConcurrencyHelpers, crypto, logging,
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FerryACME",
            dependencies: [nioCore, nioHTTP1, nioConcurrencyHelpers, crypto, x509, asn1, httpClient, nioSSL, logging],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FerrySupervisor",
            dependencies: [
                "FerryConfig", "FerryTLS", "FerryACME", "CSystemd", nioCore, nioPosix, nioHTTP1, nioConcurrencyHelpers, nioExtras,
                logging,
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FerryBackends",
            dependencies: ["COpenSSL", nioCore, nioPosix, nioHTTP1, nioWebSocket, nioConcurrencyHelpers, logging],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "ferry",
            dependencies: [
                "FerryConfig", "FerryTLS", "FerryProxy", "FerrySupervisor", "FerryBackends", "CSystemd",
                nioCore, nioPosix, nioConcurrencyHelpers, logging,
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FerryConfigTests",
            dependencies: ["FerryConfig"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FerryTLSTests",
            dependencies: ["FerryTLS", nioCore, nioConcurrencyHelpers, nioEmbedded, nioPosix],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FerryProxyTests",
            dependencies: ["FerryProxy", "FerryConfig", nioCore, nioEmbedded, nioPosix, nioHTTP1, nioHTTP2, nioHPACK, logging],
            exclude: ["Fixtures"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FerrySupervisorTests",
            dependencies: ["FerrySupervisor", "FerryConfig", nioCore, nioPosix],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FerryACMETests",
            dependencies: ["FerryACME", crypto, x509, asn1, nioCore, logging],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FerryBackendsTests",
            dependencies: ["FerryBackends", nioCore, nioEmbedded, nioPosix, nioHTTP1],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "EndToEndTests",
            dependencies: [],
            exclude: ["scripts", "browser"],
            swiftSettings: swiftSettings
        ),
    ]
)
