/// Namespace marker for the FerryProxy module; its types live in their own files.
public enum FerryProxyModule {
    public static let name = "FerryProxy"
}
