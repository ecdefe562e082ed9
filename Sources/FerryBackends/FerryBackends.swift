/// Namespace marker for the FerryBackends module; its types live in their own files.
public enum FerryBackendsModule {
    public static let name = "FerryBackends"
}
