import { useEffect, useState } from 'react';

import { GalleryModel } from '../galleryModel';

/** Re-render the calling component whenever the gallery model changes. */
export function useModelChanged(model: GalleryModel): void {
  const [, setTick] = useState(0);
  useEffect(() => {
    const bump = () => setTick(t => t + 1);
    model.changed.connect(bump);
    return () => {
      model.changed.disconnect(bump);
    };
  }, [model]);
}
