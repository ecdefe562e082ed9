// swift-tools-version:6.0
// The per-request cost of swift-nio-http2 alone on this machine (no sockets, TLS or backend):
// `make bench-h2-floor`. Kept out of Ferry's package so that Ferry's builds do not carry it.
import PackageDescription

let package = Package(
    name: "H2Floor",
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-http2", from: "1.46.0"),
    ],
    targets: [
        .executableTarget(
            name: "h2floor",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
            ])
    ]
)
